"""The session spawners (docker, and swarm on a single-node swarm) against a
real JupyterHub and the real Docker engine."""

from __future__ import annotations

import pytest

from pathlib import Path

from session_harness import (
    Hub,
    exec_in,
    make_session_dirs,
    put_file,
    remove_sessions_network,
    wait_for,
    tiny_wheel,
    user_options,
)

pytestmark = pytest.mark.docker

USER = "alice"
SERVER = "sess1"
NAME = f"jupyter-{USER}--{SERVER}"  # container (docker) or service (swarm)
TEST_USERS = (USER, "pooled", "mallory")


@pytest.fixture(scope="module", params=["docker", "swarm"])
def kind(request):
    if request.param == "swarm":
        request.getfixturevalue("swarm")
    return request.param


@pytest.fixture(scope="module")
def hub(request, kind, docker_client, singleuser_image, backend_db, run_id, tmp_path_factory):
    """The hub: on the host for docker; for swarm in a container on the
    overlay sessions network, as the routing mesh is not needed that way."""
    from jupyterhub_service.session_network import ensure_sessions_network

    workdir = tmp_path_factory.mktemp(f"hub-{kind}")
    workdir.chmod(0o755)
    network = f"jn-test-sessions-{kind}-{run_id}"
    hub_image = None
    if kind == "swarm":
        hub_image = request.getfixturevalue("hub_image")
        ensure_sessions_network(docker_client.api, network, swarm=True)
    try:
        hub = Hub(workdir, kind, network, backend_db["network"], singleuser_image, hub_image)
        yield hub
        hub.stop()
    finally:
        remove_leftovers(docker_client, network)


def remove_leftovers(docker_client, network):
    """Whatever a failed test left on this run's sessions network: the
    services first (their tasks come back otherwise), then the network with
    the containers still on it."""
    if swarm_active(docker_client):
        for user in TEST_USERS:
            for svc in docker_client.services.list(filters={"name": f"jupyter-{user}-"}):
                svc.remove()
    remove_sessions_network(docker_client, network)


def swarm_active(docker_client) -> bool:
    return docker_client.info()["Swarm"]["LocalNodeState"] == "active"


def session_container(docker_client, kind):
    """The container of the running session (a swarm service's task container)."""
    import docker

    if kind == "docker":
        try:
            return docker_client.containers.get(NAME)
        except docker.errors.NotFound:
            return None
    found = docker_client.containers.list(all=True, ignore_removed=True,
                                          filters={"label": f"com.docker.swarm.service.name={NAME}"})
    return found[0] if found else None


@pytest.fixture(scope="module")
def session(kind, hub, docker_client):
    """One running session with a CSV in ~/data; stopped at module end."""
    dirs = make_session_dirs(hub.storage, "s1", {"table.csv": "a,b\n1,2\n"})
    volumes_before = {v.name for v in docker_client.volumes.list()}
    hub.spawn(USER, SERVER, user_options(dirs))
    container = session_container(docker_client, kind)
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


def test_inspect_shows_no_privileges(kind, session):
    attrs = session["container"].attrs
    host = attrs["HostConfig"]
    assert host["Privileged"] is False
    assert host["CapDrop"] == ["ALL"]
    assert not host["CapAdd"]
    if kind == "docker":
        # swarm services cannot set it on Docker 20.10 (see SessionSwarmSpawner)
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
    # into the home: the engine refuses archives into a read-only root
    # filesystem's /tmp
    put_file(session["container"], wheel, "/home/jovyan")
    code, out = exec_in(session["container"], f"pip install --no-index ~/{wheel.name}")
    assert code == 0, out
    code, out = exec_in(session["container"], 'python -c "import tinypkg; print(tinypkg.ANSWER)"')
    assert code == 0 and out.strip() == "42", out


def test_only_the_sessions_network_is_joined(kind, hub, session):
    networks = set(session["container"].attrs["NetworkSettings"]["Networks"])
    if kind == "swarm":
        # the routing mesh publishes the server's port to the hub on the host
        networks.discard("ingress")
    assert networks == {hub.sessions_network}


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


def test_stop_removes_container_and_volumes_and_next_spawn_is_clean(
    kind, hub, session, docker_client
):
    code, _ = exec_in(session["container"], "echo mine > ~/scratch.txt")
    assert code == 0
    hub.stop_server(USER, SERVER)
    wait_for(lambda: session_container(docker_client, kind) is None, 60,
             what="the session container to be removed")
    assert {v.name for v in docker_client.volumes.list()} <= session["volumes_before"]

    hub.spawn(USER, SERVER, user_options(session["dirs"], session_id="s2"))
    container = session_container(docker_client, kind)
    assert container.id != session["container"].id
    code, out = exec_in(container, "ls ~")
    assert code == 0
    assert "scratch.txt" not in out.split()
    assert "start_here.ipynb" in out.split()
    hub.stop_server(USER, SERVER)


def test_a_data_dir_outside_the_storage_root_is_refused(kind, hub, docker_client):
    opts = user_options({"data_dir": "/etc", "home_seed_dir": str(hub.storage)})
    hub.api("POST", "/users/mallory")
    r = hub.api("POST", "/users/mallory/servers/evil", json=opts)
    if r.status_code in (201, 202):
        wait_for(
            lambda: not hub.api("GET", "/users/mallory").json()["servers"].get("evil", {}).get("pending"),
            60, what="the refused spawn to end",
        )
        server = hub.api("GET", "/users/mallory").json()["servers"].get("evil")
        assert not (server and server.get("ready"))
    else:
        assert r.status_code >= 400
    names = [c.name for c in docker_client.containers.list(all=True, ignore_removed=True)]
    assert not any(n.startswith("jupyter-mallory") for n in names)


def test_a_pool_server_claimed_later_sees_the_dataset_and_notebooks(kind, hub, docker_client):
    """The warm pool: started with an empty ~/data and seed, filled at claim."""
    from jupyterhub_service.pool_claim import copy_seed_into_session

    dirs = make_session_dirs(hub.storage, "slot1", {})
    opts = user_options(dirs, session_id="slot1")
    opts["pool"] = True
    (Path(dirs["home_seed_dir"]) / "start_here.ipynb").unlink()
    hub.spawn("pooled", "p1", opts)
    try:
        data = Path(dirs["data_dir"])
        (data / "late.csv").write_text("x\n1\n")
        (data / "late.csv").chmod(0o444)
        (Path(dirs["home_seed_dir"]) / "analysis.ipynb").write_text(
            '{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}'
        )
        copy_seed_into_session("pooled", "p1")
        r = hub.server_get("pooled", "p1", "api/contents/analysis.ipynb?content=0")
        assert r.status_code == 200, r.text
        r = hub.server_get("pooled", "p1", "api/contents/data")
        assert [f["name"] for f in r.json()["content"]] == ["late.csv"]
    finally:
        hub.stop_server("pooled", "p1")
