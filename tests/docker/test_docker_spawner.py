"""SessionDockerSpawner against a real JupyterHub and the real Docker engine."""

from __future__ import annotations

import pytest

from session_harness import (
    Hub,
    exec_in,
    make_session_dirs,
    put_file,
    tiny_wheel,
    user_options,
)

pytestmark = pytest.mark.docker

USER = "alice"
SERVER = "sess1"
CONTAINER = f"jupyter-{USER}--{SERVER}"


@pytest.fixture(scope="module")
def hub(docker_client, singleuser_image, backend_db, run_id, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("hub-docker")
    workdir.chmod(0o755)
    network = f"jn-test-sessions-{run_id}"
    hub = Hub(workdir, "docker", network, backend_db["network"], singleuser_image)
    yield hub
    hub.stop()
    for c in docker_client.containers.list(all=True, filters={"name": "jupyter-"}):
        if c.name.startswith(f"jupyter-{USER}"):
            c.remove(force=True)
    for n in docker_client.networks.list(names=[network]):
        n.remove()


@pytest.fixture(scope="module")
def session(hub, docker_client):
    """One running session with a CSV in ~/data; stopped at module end."""
    dirs = make_session_dirs(hub.storage, "s1", {"table.csv": "a,b\n1,2\n"})
    volumes_before = {v.name for v in docker_client.volumes.list()}
    hub.spawn(USER, SERVER, user_options(dirs))
    container = docker_client.containers.get(CONTAINER)
    yield {"container": container, "dirs": dirs, "volumes_before": volumes_before}
    if SERVER in hub.api("GET", f"/users/{USER}").json().get("servers", {}):
        hub.stop_server(USER, SERVER)


def test_jupyterlab_answers_through_the_hub_proxy(hub, session):
    r = hub.server_get(USER, SERVER, "api/status")
    assert r.status_code == 200, r.text
    r = hub.server_get(USER, SERVER, "lab")
    assert r.status_code == 200
    assert "JupyterLab" in r.text


def test_home_is_seeded_and_data_is_listed(hub, session):
    r = hub.server_get(USER, SERVER, "api/contents/start_here.ipynb?content=0")
    assert r.status_code == 200, r.text
    r = hub.server_get(USER, SERVER, "api/contents/data")
    assert [f["name"] for f in r.json()["content"]] == ["table.csv"]


def test_inspect_shows_limits(session):
    host = session["container"].attrs["HostConfig"]
    assert host["Memory"] == 1024**3
    assert host["NanoCpus"] == 500_000_000
    assert host["PidsLimit"] == 256


def test_inspect_shows_no_privileges(session):
    attrs = session["container"].attrs
    host = attrs["HostConfig"]
    assert host["Privileged"] is False
    assert host["CapDrop"] == ["ALL"]
    assert not host["CapAdd"]
    assert "no-new-privileges:true" in host["SecurityOpt"]
    assert attrs["Config"]["User"] == "1000:100"
    mounts = [m["Source"] for m in attrs["Mounts"]]
    assert not any("docker.sock" in m for m in mounts)


def test_data_is_a_read_only_bind_mount(session):
    mounts = {m["Destination"]: m for m in session["container"].attrs["Mounts"]}
    data = mounts["/home/jovyan/data"]
    assert data["Type"] == "bind"
    assert data["Source"] == session["dirs"]["data_dir"]
    assert data["RW"] is False
    code, out = exec_in(session["container"], "touch ~/data/new.txt")
    assert code != 0
    code, out = exec_in(session["container"], "echo x >> ~/data/table.csv")
    assert code != 0
    code, out = exec_in(session["container"], "cat ~/data/table.csv")
    assert code == 0 and out.startswith("a,b")


def test_runs_as_unprivileged_user(session):
    code, out = exec_in(session["container"], "id -u; grep CapEff /proc/self/status")
    assert code == 0
    uid, capeff = out.split("\n")[:2]
    assert uid == "1000"
    assert capeff.split()[-1] == "0000000000000000"


def test_pip_install_of_a_local_wheel_works(session, tmp_path):
    wheel = tiny_wheel(tmp_path)
    put_file(session["container"], wheel, "/tmp")
    code, out = exec_in(session["container"], f"pip install --no-index /tmp/{wheel.name}")
    assert code == 0, out
    code, out = exec_in(session["container"], 'python -c "import tinypkg; print(tinypkg.ANSWER)"')
    assert code == 0 and out.strip() == "42", out


def test_only_the_sessions_network_is_joined(hub, session):
    networks = session["container"].attrs["NetworkSettings"]["Networks"]
    assert list(networks) == [hub.sessions_network]


def test_backend_db_is_unreachable_but_hub_is_reachable(session, backend_db):
    probe = (
        "python3 - <<'EOF'\n"
        "import os, socket, urllib.request\n"
        "def can(host):\n"
        "    try:\n"
        f"        socket.create_connection((host, {backend_db['port']}), timeout=3).close()\n"
        "        return 'open'\n"
        "    except OSError as e:\n"
        "        return 'closed'\n"
        f"print(can('db'), can({backend_db['ip']!r}))\n"
        "r = urllib.request.urlopen(os.environ['JUPYTERHUB_API_URL'] + '/', timeout=5)\n"
        "print(r.status)\n"
        "EOF"
    )
    code, out = exec_in(session["container"], probe)
    assert code == 0, out
    assert out.split() == ["closed", "closed", "200"], out


def test_stop_removes_container_and_volumes_and_next_spawn_is_clean(hub, session, docker_client):
    import docker

    code, _ = exec_in(session["container"], "echo mine > ~/scratch.txt")
    assert code == 0
    hub.stop_server(USER, SERVER)
    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(CONTAINER)
    assert {v.name for v in docker_client.volumes.list()} <= session["volumes_before"]

    hub.spawn(USER, SERVER, user_options(session["dirs"], session_id="s2"))
    container = docker_client.containers.get(CONTAINER)
    assert container.id != session["container"].id
    code, out = exec_in(container, "ls ~")
    assert code == 0
    assert "scratch.txt" not in out.split()
    assert "start_here.ipynb" in out.split()
    hub.stop_server(USER, SERVER)
