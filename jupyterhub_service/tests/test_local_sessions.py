"""Local sessions in a real hub: the data, the isolation, the clock and the
revert."""

from __future__ import annotations

import base64
import zipfile
from pathlib import Path

import pytest

from dev.testing import open_lab, wait_until

from .fileserver import FileServer, Route

CSV = b"station,temp\nA,12.5\nB,13.1\n"


@pytest.fixture
def files():
    srv = FileServer().start()
    srv.routes["/weather.csv"] = Route(body=CSV)
    yield srv
    srv.stop()


def resource(files):
    return {"id": "res-w", "name": "Weather", "format": "CSV", "hash": "w1",
            "fetch_url": files.url("/weather.csv"), "source": "ckan"}



def test_data_is_byte_identical_and_start_here_loads_it(bridge, files):
    lab = open_lab(bridge.launch("ds-data", resources=[resource(files)]).json())
    assert lab.read("data/Weather.csv") == CSV
    assert "README.md" in lab.listing("data")
    out, err = lab.execute(
        "import json, pandas as pd\n"
        "nb = json.load(open('start_here.ipynb'))\n"
        "code = '\\n'.join(''.join(c['source']) for c in nb['cells'] if c['cell_type'] == 'code')\n"
        "exec(code)\n"
        "print('rows', len(pd.read_csv('data/Weather.csv')))\n"
    )
    assert err is None, err
    assert "rows 2" in out


def test_a_session_cannot_write_its_data_or_read_the_cache(bridge, files, hub_stack):
    lab = open_lab(bridge.launch("ds-iso", resources=[resource(files)]).json())
    cache = hub_stack.storage / "cache"
    out, err = lab.execute(
        "import os\n"
        "for attempt in ('open(\"data/Weather.csv\", \"a\").write(\"x\")',\n"
        "                'open(\"data/new.txt\", \"w\").write(\"x\")',\n"
        "                'os.remove(\"data/Weather.csv\")',\n"
        f"                'os.listdir(\"{cache}\")'):\n"
        "    try:\n"
        "        exec(attempt); print('ALLOWED', attempt)\n"
        "    except PermissionError:\n"
        "        print('refused')\n"
        "print('uid', os.getuid())\n"
    )
    assert err is None, err
    assert "ALLOWED" not in out
    assert out.count("refused") == 4
    assert "uid 0" not in out
    assert lab.read("data/Weather.csv") == CSV


def _tiny_wheel(tmp_path: Path) -> Path:
    wheel = tmp_path / "tinypkg_for_tests-1.0-py3-none-any.whl"
    dist = "tinypkg_for_tests-1.0.dist-info"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("tinypkg_for_tests.py", "ANSWER = 42\n")
        z.writestr(f"{dist}/METADATA", "Metadata-Version: 2.1\nName: tinypkg-for-tests\nVersion: 1.0\n")
        z.writestr(f"{dist}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr(f"{dist}/RECORD", "")
    return wheel


def test_pip_install_in_a_session_goes_into_its_home(bridge, tmp_path):
    lab = open_lab(bridge.launch("ds-pip").json())
    wheel = _tiny_wheel(tmp_path)
    resp = lab.http.put(lab.base + "api/contents/" + wheel.name, headers=lab._headers(), timeout=30,
                        json={"type": "file", "format": "base64",
                              "content": base64.b64encode(wheel.read_bytes()).decode()})
    assert resp.status_code in (200, 201), resp.text
    out, err = lab.execute(
        "import subprocess, sys, os\n"
        f"r = subprocess.run([sys.executable, '-m', 'pip', 'install', '--no-index', '{wheel.name}'],"
        " capture_output=True, text=True)\n"
        "print(r.returncode, r.stderr[-300:])\n"
        "import importlib; importlib.invalidate_caches()\n"
        "import tinypkg_for_tests\n"
        "print('answer', tinypkg_for_tests.ANSWER)\n"
        "print('inside home', tinypkg_for_tests.__file__.startswith(os.environ['HOME']))\n"
    )
    assert err is None, f"{err}\n{out}"
    assert "answer 42" in out and "inside home True" in out


def test_when_time_is_up_everything_is_removed_and_a_new_launch_is_fresh(bridge, files, hub_stack):
    bridge.put_settings(timeout=10)
    first = bridge.launch("ds-clock", user_id="guest-clock", resources=[resource(files)]).json()
    lab = open_lab(first)
    assert lab.write("notes.txt", "my edits").status_code in (200, 201)
    home = hub_stack.storage / "sessions" / first["id"]
    assert home.exists()

    def ended():
        return bridge.call("GET", f"/api/sessions/{first['id']}").json()["status"] == "ended"

    assert wait_until(ended, timeout=40)
    assert not home.exists()
    assert lab.status() != 200  # the server is gone
    # the browser that had it, arriving at the old URL, is told the session
    # ended (the dataset is named only to that browser)
    old = lab.http.get(f"{hub_stack.hub_url}/user/{first['hub_user']}/{first['server_name']}/lab",
                       timeout=30)
    assert old.status_code == 410
    assert "has ended" in old.text and "discarded" in old.text
    assert first["dataset_url"] in old.text

    bridge.put_settings(timeout=1200)
    second = bridge.launch("ds-clock", user_id="guest-clock", resources=[resource(files)]).json()
    assert second["id"] != first["id"]
    lab2 = open_lab(second)
    assert "notes.txt" not in lab2.listing()
    assert lab2.read("data/Weather.csv") == CSV


def test_idle_sessions_are_ended(bridge, hub_stack):
    bridge.put_settings(idle_timeout=1)
    sess = bridge.launch("ds-idle", user_id="guest-idle").json()

    def ended():
        return bridge.call("GET", f"/api/sessions/{sess['id']}").json()["status"] == "ended"

    # last_activity is the spawn; with a 1 s idle limit the reaper ends it
    assert wait_until(ended, timeout=60)
