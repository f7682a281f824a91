"""What a session container can reach and how much it can write, measured
from code run inside real sessions of a real hub (docker spawner, hub on the
host), and the removal of orphans.

Network probes go only to what these tests create: a listener on a host port,
a listener on the sessions network's gateway, another session's server and
the hub. That the internet stays open (``session_egress=public``) and
private, link-local and CGNAT ranges are closed is read from the host's rule
set, never by sending traffic there.
"""

from __future__ import annotations

import socket
import subprocess

import pytest

from session_harness import (
    Canary,
    Hub,
    exec_in,
    iptables_rules,
    make_session_dirs,
    remove_sessions_network,
    user_options,
    wait_for,
)

pytestmark = pytest.mark.docker

USERS = ("confined", "neighbour", "offline")


@pytest.fixture(scope="module")
def hub(docker_client, singleuser_image, backend_db, run_id, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("hub-confine")
    workdir.chmod(0o755)
    network = f"jn-test-confine-{run_id}"
    try:
        hub = Hub(workdir, "docker", network, backend_db["network"], singleuser_image)
        yield hub
        hub.stop()
    finally:
        for c in docker_client.containers.list(all=True, ignore_removed=True):
            if c.name.startswith(tuple(f"jupyter-{u}-" for u in USERS)):
                c.remove(force=True)
        remove_sessions_network(docker_client, network)


def spawn(hub, docker_client, user: str, session_id: str, **limits):
    dirs = make_session_dirs(hub.storage, session_id, {"table.csv": "a,b\n1,2\n"})
    options = user_options(dirs, session_id=session_id)
    options["limits"].update(limits)
    hub.spawn(user, "s", options)
    return docker_client.containers.get(f"jupyter-{user}--s")


@pytest.fixture(scope="module")
def sessions(hub, docker_client):
    """Two running sessions; the first with a 128M home."""
    confined = spawn(hub, docker_client, "confined", "c0ffee01", disk_limit="128M")
    neighbour = spawn(hub, docker_client, "neighbour", "c0ffee02")
    yield {"confined": confined, "neighbour": neighbour}
    for user in ("confined", "neighbour"):
        if "s" in hub.api("GET", f"/users/{user}").json().get("servers", {}):
            hub.stop_server(user, "s")


def sessions_network(docker_client, hub) -> dict:
    return docker_client.api.inspect_network(hub.sessions_network)


def gateway(docker_client, hub) -> str:
    from jupyterhub_service.session_network import network_gateway

    return network_gateway(sessions_network(docker_client, hub))


def bridge(docker_client, hub) -> str:
    from jupyterhub_service.session_network import bridge_interface

    return bridge_interface(sessions_network(docker_client, hub))


def probe(container, targets: list[tuple[str, int]]) -> list[str]:
    """'open' or 'closed' for each (host, port), from inside the session."""
    script = (
        "python3 - <<'EOF'\n"
        "import socket\n"
        f"for host, port in {targets!r}:\n"
        "    try:\n"
        "        socket.create_connection((host, port), timeout=5).close()\n"
        "        print('open')\n"
        "    except OSError:\n"
        "        print('closed')\n"
        "EOF"
    )
    code, out = exec_in(container, script)
    assert code == 0, out
    return out.split()


def hub_answers_from(container) -> str:
    code, out = exec_in(container, (
        "python3 -c \"import os, urllib.request; print(urllib.request.urlopen("
        "os.environ['JUPYTERHUB_API_URL'] + '/', timeout=5).status)\""))
    assert code == 0, out
    return out.strip()


def session_ip(container) -> str:
    container.reload()
    (net,) = container.attrs["NetworkSettings"]["Networks"].values()
    return net["IPAddress"]


# -- what a session reaches ----------------------------------------------------


def test_a_session_reaches_the_hub_api_but_no_host_port_gateway_service_or_other_session(
        hub, sessions, docker_client):
    gw = gateway(docker_client, hub)
    on_every_host_address = Canary("0.0.0.0")
    on_the_gateway = Canary(gw)
    neighbour = (session_ip(sessions["neighbour"]), 8888)
    try:
        # the canaries and the neighbour's server answer from the host
        for port in (on_every_host_address.port, on_the_gateway.port):
            socket.create_connection((gw, port), timeout=5).close()
        socket.create_connection(neighbour, timeout=5).close()
        # the canaries count in their own threads: wait for both controls
        wait_for(lambda: on_every_host_address.hits + on_the_gateway.hits == 2, 10,
                 interval=0.05, what="the canaries to count the host's connections")
        hits = on_every_host_address.hits + on_the_gateway.hits

        seen = probe(sessions["confined"], [
            (gw, on_every_host_address.port), (gw, on_the_gateway.port), neighbour])
        assert seen == ["closed", "closed", "closed"]
        assert on_every_host_address.hits + on_the_gateway.hits == hits
        assert hub_answers_from(sessions["confined"]) == "200"
    finally:
        on_every_host_address.close()
        on_the_gateway.close()


def test_sessions_network_forbids_traffic_between_containers(hub, docker_client):
    options = sessions_network(docker_client, hub)["Options"]
    assert options["com.docker.network.bridge.enable_icc"] == "false"


def test_public_egress_rules_reject_private_link_local_and_cgnat_and_return_the_rest(
        hub, sessions, docker_client):
    br = bridge(docker_client, hub)
    assert f"-A DOCKER-USER -i {br} -j JN-OUT-{br}" in iptables_rules("DOCKER-USER")
    out = iptables_rules(f"JN-OUT-{br}")
    for net in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16",
                "100.64.0.0/10", "127.0.0.0/8"):
        assert f"-A JN-OUT-{br} -d {net} -j REJECT --reject-with icmp-port-unreachable" in out
    # everything else goes on to Docker's rules: the internet (pip)
    assert out[-1] == f"-A JN-OUT-{br} -j RETURN"


def test_the_host_accepts_only_the_hub_api_port_from_sessions(hub, sessions, docker_client):
    br = bridge(docker_client, hub)
    assert f"-A INPUT -i {br} -j JN-IN-{br}" in iptables_rules("INPUT")
    gw = gateway(docker_client, hub)
    hub_port = int(hub_answers_port(sessions["confined"]))
    assert iptables_rules(f"JN-IN-{br}")[1:] == [
        f"-A JN-IN-{br} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
        f"-A JN-IN-{br} -d {gw}/32 -p tcp -m tcp --dport {hub_port} -j ACCEPT",
        f"-A JN-IN-{br} -j REJECT --reject-with icmp-port-unreachable",
    ]


def hub_answers_port(container) -> str:
    code, out = exec_in(container, "python3 -c \"import os, urllib.parse; "
                        "print(urllib.parse.urlsplit(os.environ['JUPYTERHUB_API_URL']).port)\"")
    assert code == 0, out
    return out.strip()


# -- how much a session writes -------------------------------------------------


def test_writing_past_the_disk_limit_fails_in_the_session_only(hub, sessions):
    confined, neighbour = sessions["confined"], sessions["neighbour"]
    code, out = exec_in(confined, "df -k --output=size ~ | tail -1")
    assert code == 0 and 100 * 1024 < int(out) <= 128 * 1024, out

    code, out = exec_in(confined, "dd if=/dev/zero of=$HOME/big bs=1M count=200 2>&1")
    assert code != 0 and "No space left on device" in out, out
    # nothing else to write to: the root filesystem is read-only, /tmp small
    code, out = exec_in(confined, "touch /opt/venv/x 2>&1")
    assert code != 0 and "Read-only file system" in out, out
    code, out = exec_in(confined, "dd if=/dev/zero of=/tmp/big bs=1M count=200 2>&1")
    assert code != 0 and "No space left on device" in out, out

    # on the host, the session took no more than its image's 128M
    image = hub.storage / "session-homes" / "c0ffee01.ext4"
    assert image.stat().st_blocks * 512 <= 128 * 1024**2
    code, out = exec_in(neighbour, "echo fine > ~/note.txt && cat ~/note.txt")
    assert code == 0 and out.strip() == "fine", out
    exec_in(confined, "rm -f $HOME/big /tmp/big")


def test_stopping_a_session_leaves_no_home_image_mount_or_loop_device(hub, docker_client):
    container = spawn(hub, docker_client, "offline", "c0ffee03")
    homes = hub.storage / "session-homes"
    assert (homes / "c0ffee03.ext4").is_file()
    hub.stop_server("offline", "s")
    wait_for(lambda: not docker_client.containers.list(all=True, ignore_removed=True,
                                                       filters={"id": container.id}),
             30, what="the container to go")
    assert not any("c0ffee03" in p.name for p in homes.iterdir())
    assert not any("c0ffee03" in line for line in open("/proc/self/mounts"))
    loops = subprocess.run(["losetup", "-a"], capture_output=True, text=True).stdout
    assert "c0ffee03" not in loops


def test_session_egress_none_leaves_only_the_hub(hub, sessions, docker_client):
    """Network-wide: the mode of the latest start holds for every session."""
    br = bridge(docker_client, hub)
    container = spawn(hub, docker_client, "offline", "c0ffee04", session_egress="none")
    try:
        assert iptables_rules(f"JN-OUT-{br}")[1:] == [
            f"-A JN-OUT-{br} -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN",
            f"-A JN-OUT-{br} -j REJECT --reject-with icmp-port-unreachable",
        ]
        assert hub_answers_from(container) == "200"
    finally:
        hub.stop_server("offline", "s")
    # the next start under public brings the internet back
    spawn(hub, docker_client, "offline", "c0ffee05")
    hub.stop_server("offline", "s")
    assert iptables_rules(f"JN-OUT-{br}")[-1] == f"-A JN-OUT-{br} -j RETURN"


# -- orphans -----------------------------------------------------------------------


def test_remove_orphans_removes_unknown_sessions_containers_homes_and_volumes(
        docker_client, helper_image, run_id, tmp_path):
    from jupyterhub_service.container_labels import LABEL_HUB_USER, LABEL_SESSION
    from jupyterhub_service.container_orphans import remove_orphans
    from jupyterhub_service.session_disk import SessionHome

    network = docker_client.networks.create(f"jn-test-orphans-{run_id}", driver="bridge")
    elsewhere = docker_client.networks.create(f"jn-test-orphans-other-{run_id}", driver="bridge")

    def container(name, session_id=None, on=network):
        labels = {LABEL_SESSION: session_id, LABEL_HUB_USER: "ghost"} if session_id else {}
        return docker_client.containers.run(
            helper_image, ["python3", "-c", "import time; time.sleep(600)"],
            name=f"jn-test-{name}-{run_id}", detach=True, user="65534:65534",
            labels=labels, network=on.name)

    kept, orphan = container("kept", "kept1"), container("orphan", "orphan1")
    unlabelled = container("unlabelled")
    other_hubs = container("other-hub", "orphan2", on=elsewhere)
    volume = docker_client.volumes.create(f"jn-test-orphan-{run_id}",
                                          labels={LABEL_SESSION: "orphan1"})
    homes = tmp_path / "homes"
    SessionHome(homes, "kept1").create(64 * 1024**2)
    SessionHome(homes, "orphan1").create(64 * 1024**2)
    try:
        removed = remove_orphans({"kept1"}, homes_root=homes, network=network.name,
                                 client=docker_client)

        assert sorted(removed) == sorted([
            f"container {orphan.name}", f"volume {volume.name}",
            f"mount {homes / 'orphan1'}", str(homes / "orphan1"), str(homes / "orphan1.ext4"),
        ])
        names = {c.name for c in docker_client.containers.list(all=True, ignore_removed=True)}
        assert orphan.name not in names
        assert {kept.name, unlabelled.name, other_hubs.name} <= names
        assert sorted(p.name for p in homes.iterdir()) == ["kept1", "kept1.ext4"]
        assert SessionHome(homes, "kept1").mounted()
        assert remove_orphans({"kept1"}, homes_root=homes, network=network.name,
                              client=docker_client) == []
    finally:
        for c in (kept, orphan, unlabelled, other_hubs):
            try:
                c.remove(force=True)
            except Exception:  # noqa: BLE001 - already removed by the test
                pass
        SessionHome(homes, "kept1").remove()
        SessionHome(homes, "orphan1").remove()
        for v in docker_client.volumes.list(filters={"name": f"jn-test-orphan-{run_id}"}):
            v.remove(force=True)
        network.remove()
        elsewhere.remove()
