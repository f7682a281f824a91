"""Local sessions cannot reach each other, and root never writes through what
a session planted in its home: real sessions in the real hub."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap

import pytest

from dev.testing import open_lab, wait_until

from .fileserver import FileServer, Route

CSV = b"station,temp\nA,12.5\n"


@pytest.fixture
def files():
    srv = FileServer().start()
    srv.routes["/weather.csv"] = Route(body=CSV)
    yield srv
    srv.stop()


@pytest.fixture
def pool(bridge):
    yield bridge
    bridge.put_settings(pool_size=0)
    assert wait_until(lambda: pool_ready(bridge) == 0)


@pytest.fixture
def target(tmp_path):
    """A directory the attack points at (standing in for /etc/cron.d)."""
    d = tmp_path / "target"
    d.mkdir(mode=0o700)
    os.chmod(d, 0o700)
    return d


def pool_ready(bridge) -> int:
    return bridge.call("GET", "/api/capacity").json()["pool"]["ready"]


def resource(files):
    # an id and hash of its own: the download cache is shared by the whole
    # run and keyed by them, and test_local_sessions serves other bytes
    # under res-w/w1
    return {"id": "res-isolation-w", "name": "Weather", "format": "CSV", "hash": "iso-w1",
            "fetch_url": files.url("/weather.csv"), "source": "ckan"}


def ready_slot_home(bridge, hub_stack):
    bridge.put_settings(pool_size=1)
    assert wait_until(lambda: pool_ready(bridge) == 1, timeout=90)
    live = {s["id"] for s in bridge.sessions()}
    slots = [p for p in (hub_stack.storage / "sessions").iterdir() if p.name not in live]
    assert len(slots) == 1
    return slots[0] / "home"


def run_as_owner_of(home, code: str) -> subprocess.CompletedProcess:
    """Run ``code`` as whatever uid owns ``home``: what that session's own
    code could do."""
    st = os.lstat(home)

    def become():
        os.setgroups([])
        os.setgid(st.st_gid)
        os.setuid(st.st_uid)

    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], preexec_fn=become,
                          cwd="/", capture_output=True, text=True, timeout=60)


def assert_untouched(target):
    assert os.listdir(target) == []
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o700


def test_a_pool_claim_never_writes_through_symlinks_its_slot_planted(pool, files, hub_stack, target):
    home = ready_slot_home(pool, hub_stack)
    planted = run_as_owner_of(home, f"""
        import os
        os.rename({str(home / 'data')!r}, {str(home / 'data.old')!r})
        os.symlink({str(target)!r}, {str(home / 'data')!r})
        os.symlink({str(target / 'start_here.ipynb')!r}, {str(home / 'start_here.ipynb')!r})
        print("planted")
    """)
    assert planted.stdout.strip() == "planted", planted.stderr

    sess = pool.launch("ds-planted", user_id="guest-planted", resources=[resource(files)]).json()
    assert sess["from_pool"] is True
    assert_untouched(target)
    assert not (home / "data").is_symlink() and not (home / "start_here.ipynb").is_symlink()
    lab = open_lab(sess)
    assert lab.read("data/Weather.csv") == CSV
    assert "start_here.ipynb" in lab.listing()


def test_another_session_cannot_touch_a_pool_slots_home(pool, files, hub_stack, target):
    home = ready_slot_home(pool, hub_stack)
    other = open_lab(pool.launch("ds-neighbour", kind="user", user_id="neighbour").json())
    out, err = other.execute(textwrap.dedent(f"""
        import os
        try:
            os.rename({str(home / 'data')!r}, {str(home / 'data.old')!r})
            os.symlink({str(target)!r}, {str(home / 'data')!r})
            print("PLANTED")
        except PermissionError:
            print("refused")
    """))
    assert err is None, err
    assert out.strip() == "refused"
    sess = pool.launch("ds-claim", user_id="guest-claim", resources=[resource(files)]).json()
    assert sess["from_pool"] is True
    assert_untouched(target)
    assert open_lab(sess).read("data/Weather.csv") == CSV


def test_a_session_cannot_read_another_sessions_home_or_process_cwd(bridge, files, hub_stack):
    first = bridge.launch("ds-first", kind="user", user_id="first", resources=[resource(files)]).json()
    second = bridge.launch("ds-second", kind="user", user_id="second").json()
    lab1, lab2 = open_lab(first), open_lab(second)
    # positive control: the paths below are right, for the session itself
    out, err = lab1.execute("import os; print(os.getpid(), os.getuid(), "
                            "len(open(f'/proc/{os.getpid()}/cwd/data/Weather.csv', 'rb').read()))")
    assert err is None, err
    pid1, uid1, size = out.split()
    assert int(size) == len(CSV)
    home1 = hub_stack.storage / "sessions" / first["id"] / "home"
    out, err = lab2.execute(textwrap.dedent(f"""
        import os
        print("uid", os.getuid())
        for path in ({str(home1 / 'data' / 'Weather.csv')!r}, {str(home1 / 'start_here.ipynb')!r},
                     "/proc/{pid1}/cwd/data/Weather.csv", "/proc/{pid1}/cwd/start_here.ipynb"):
            try:
                open(path, "rb").read()
                print("READ", path)
            except (PermissionError, FileNotFoundError):  # the kernel hides another uid's cwd
                print("refused")
    """))
    assert err is None, err
    assert "READ" not in out
    assert out.count("refused") == 4
    uid2 = out.split()[1]
    assert uid1 != uid2


def test_a_process_a_session_left_running_ends_with_it(bridge):
    sess = bridge.launch("ds-daemon", kind="user", user_id="daemon").json()
    lab = open_lab(sess)
    out, err = lab.execute(
        "import subprocess\n"
        "p = subprocess.Popen(['sleep', '600'], start_new_session=True)\n"
        "print(p.pid)\n"
    )
    assert err is None, err
    pid = int(out.strip())
    assert os.path.exists(f"/proc/{pid}")
    assert bridge.call("DELETE", f"/api/sessions/{sess['id']}").status_code == 204
    assert wait_until(lambda: not os.path.exists(f"/proc/{pid}") or _is_zombie(pid), timeout=30)


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
