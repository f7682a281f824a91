"""The compose stack, as an operator runs it: `make images`, then
`docker-compose up` with the local override (no registry here, so PostgreSQL
and Redis are the Debian-built stand-ins and Solr is the stand-in) and, for
swarm, the swarm override. A visitor opens the seeded dataset in Jupyter
through CKAN's page and lands in JupyterLab in a session container that can
reach the hub and nothing of the portal's backend; stopping the session
(`ckan jupyter stop` in the CKAN container) leaves nothing of it behind."""

from __future__ import annotations

import base64
import io
import json
import secrets
import shutil
import socket
import subprocess
import zipfile
from pathlib import Path

import pytest
import requests

from jupyterhub_service.container_labels import LABEL_SESSION
from session_harness import (
    REPO,
    Canary,
    assert_confined,
    compose_command,
    free_port,
    iptables_rules,
    session_containers,
    wait_for,
)
from dev.testing import Browser, Lab, server_path

pytestmark = pytest.mark.docker

DEMO = REPO / "dev" / "demo"


class ComposeStack:
    """One `docker-compose up` of the repository's compose files."""

    def __init__(self, workdir: Path, kind: str):
        self.kind = kind
        self.workdir = workdir
        self.project = f"jntest{kind}{secrets.token_hex(3)}"
        self.ckan_port, self.hub_port = free_port(), free_port()
        self.ckan_url = f"http://127.0.0.1:{self.ckan_port}"
        self.hub_url = f"http://127.0.0.1:{self.hub_port}"
        self.storage = workdir / "storage"
        self.storage.mkdir(parents=True)
        self.backend = f"{self.project}-backend"
        self.sessions_network = f"{self.project}-sessions"
        env = {
            "CKAN_SITE_URL": self.ckan_url,
            "CKAN_JUPYTERNOTEBOOK_URL": self.hub_url,
            "CKAN_PORT": self.ckan_port,
            "HUB_PORT": self.hub_port,
            "CKAN_JUPYTERHUB_API_TOKEN": secrets.token_hex(32),
            "POSTGRES_PASSWORD": secrets.token_hex(16),
            "CKAN_STORAGE_NOTEBOOK": self.storage,
            "CKAN_NETWORK": self.backend,
            "JUPYTERNOTEBOOK_SESSIONS_NETWORK": self.sessions_network,
            "CKAN_JUPYTERHUB_SPAWNER": kind,
            "CKAN_JUPYTERHUB_MEMORY_LIMIT": "512M",
            "CKAN_JUPYTERHUB_PERCENTAGE_CPU": "50",
            "CKAN_JUPYTERHUB_DISK_LIMIT": "200M",
        }
        self.env_file = workdir / ".env"
        self.env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
        files = ["docker-compose.yml", "docker-compose.local.yml"]
        if kind == "swarm":
            files.append("docker-compose.swarm.yml")
        self.command = [*compose_command(), "--project-name", self.project,
                        "--project-directory", str(REPO), "--env-file", str(self.env_file)]
        for f in files:
            self.command += ["-f", str(REPO / f)]

    def compose(self, *args, timeout=600, check=True) -> subprocess.CompletedProcess:
        r = subprocess.run([*self.command, *args], cwd=REPO, capture_output=True,
                           text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"compose {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}")
        return r

    def container(self, service: str) -> str:
        return f"{self.project}_{service}_1"

    def exec(self, service: str, *cmd: str, timeout=300) -> str:
        r = subprocess.run(["docker", "exec", self.container(service), *cmd],
                           capture_output=True, text=True, timeout=timeout)
        assert r.returncode == 0, f"{cmd} in {service} failed:\n{r.stdout}\n{r.stderr}"
        return r.stdout

    def answers(self, url: str) -> bool:
        try:
            return requests.get(url, timeout=5).status_code == 200
        except requests.RequestException:
            return False

    def up(self):
        self.compose("up", "-d", "--no-build")
        wait_for(lambda: self.answers(f"{self.ckan_url}/api/3/action/status_show"), 300,
                 interval=2, what="CKAN in the compose stack to answer")
        wait_for(lambda: self.answers(f"{self.hub_url}/hub/health"), 120,
                 interval=2, what="the hub in the compose stack to answer")

    def seed(self) -> dict:
        """dev/seed.py run inside the CKAN container: a public dataset with an
        uploaded CSV, stored in CKAN's storage volume."""
        ckan = self.container("ckan")
        subprocess.run(["docker", "exec", "-u", "0", ckan, "mkdir", "-p", "/tmp/seed"], check=True)
        for path in (REPO / "dev" / "seed.py", DEMO):
            subprocess.run(["docker", "cp", str(path), f"{ckan}:/tmp/seed/"], check=True)
        subprocess.run(["docker", "exec", "-u", "0", ckan, "chmod", "-R", "a+rX", "/tmp/seed"],
                       check=True)
        out = self.exec("ckan", "python3", "/tmp/seed/seed.py", "--config", "/srv/app/ckan.ini")
        return json.loads(out.strip().splitlines()[-1])

    def ckan_cli(self, *args: str) -> str:
        return self.exec("ckan", "ckan", "jupyter", *args)

    def logs(self) -> str:
        return self.compose("logs", "--no-color", "--tail", "60", check=False, timeout=120).stdout

    def down(self, docker_client):
        """The stack, its volumes and whatever the hub left on the sessions
        network (a failed test may leave a session behind)."""
        import docker

        if self.kind == "swarm":
            try:
                network_id = docker_client.networks.get(self.sessions_network).id
            except docker.errors.NotFound:
                network_id = None
            for svc in docker_client.services.list():
                nets = svc.attrs["Spec"]["TaskTemplate"].get("Networks") or []
                if any(n.get("Target") in (network_id, self.sessions_network) for n in nets):
                    svc.remove()
        # left-over sessions first: a network with containers on it stays
        for c in docker_client.containers.list(all=True, ignore_removed=True,
                                               filters={"network": self.sessions_network}):
            if c.name != self.container("jupyterhub"):
                c.remove(force=True)
        self.compose("down", "--volumes", "--remove-orphans", "--timeout", "20",
                     check=False, timeout=300)
        shutil.rmtree(self.workdir, ignore_errors=True)


def session_services(docker_client, session_id: str):
    return [s for s in docker_client.services.list()
            if s.attrs["Spec"]["TaskTemplate"]["ContainerSpec"].get("Labels", {})
            .get(LABEL_SESSION) == session_id]


@pytest.fixture(scope="module", params=["docker", "swarm"])
def compose_stack(request, docker_client, images, tmp_path_factory):
    kind = request.param
    if kind == "swarm":
        request.getfixturevalue("swarm")
    workdir = Path(tmp_path_factory.mktemp(f"compose-{kind}"))
    workdir.chmod(0o755)
    stack = ComposeStack(workdir, kind)
    try:
        try:
            stack.up()
            seed = stack.seed()
        except (AssertionError, TimeoutError) as e:
            raise AssertionError(f"{e}\n--- compose logs ---\n{stack.logs()}") from None
        yield stack, seed
    finally:
        stack.down(docker_client)


PROBE = """
import json, os, socket, urllib.error, urllib.request
def reach(host, port):
    try:
        socket.create_connection((host, port), timeout=3).close()
        return "open"
    except OSError as e:
        return type(e).__name__
found = {f"{h}:{p}": reach(h, p) for h, p in
         [("db", 5432), ("redis", 6379), ("solr", 8983), ("ckan", 5000)]}
hub = urllib.request.urlopen(os.environ["JUPYTERHUB_API_URL"], timeout=10).status
try:  # the bridge shares the hub's container, and so its sessions-network address
    bridge = urllib.request.urlopen(
        "http://jupyterhub:6000/api/settings", timeout=10).status
except urllib.error.HTTPError as e:
    bridge = e.code
except urllib.error.URLError as e:
    bridge = type(e.reason).__name__
print(json.dumps([found, hub, bridge]))
"""


def test_a_visitor_launch_in_the_compose_stack_reaches_jupyterlab_cut_off_from_the_backend(
        compose_stack, docker_client):
    stack, seed = compose_stack
    volumes_before = {v.name for v in docker_client.volumes.list()}
    browser = Browser()
    final = browser.open_in_jupyter(stack.ckan_url, seed["dataset"])
    assert final.status_code == 200, final.text[:500]
    assert final.url.startswith(stack.hub_url), final.url
    lab = Lab.from_url(browser.http, final.url)
    assert lab.read("data/cities.csv") == (DEMO / "cities.csv").read_bytes()
    assert "start_here.ipynb" in lab.listing()

    (session,) = json.loads(stack.ckan_cli("sessions", "--json"))
    if stack.kind == "swarm":
        (service,) = session_services(docker_client, session["id"])
        resources = service.attrs["Spec"]["TaskTemplate"]["Resources"]["Limits"]
        assert resources["MemoryBytes"] == 512 * 1024**2
        assert resources["NanoCPUs"] == 500_000_000
    (container,) = session_containers(docker_client, session["id"])
    assert_confined(container, memory=512 * 1024**2, nano_cpus=500_000_000)
    assert set(container.attrs["NetworkSettings"]["Networks"]) == {stack.sessions_network}

    out, err = lab.execute(PROBE)
    assert err is None, err
    found, hub_status, bridge_status = json.loads(out.strip().splitlines()[-1])
    assert hub_status == 200
    if stack.kind == "docker":
        # the firewall lets sessions reach the hub's API port and no other
        assert bridge_status == "ConnectionRefusedError"
    else:
        assert bridge_status == 403  # refused before any token is looked at
    assert all(state != "open" for state in found.values()), found

    assert f"stopped {session['id']}" in stack.ckan_cli("stop", session["id"])
    wait_for(lambda: not session_containers(docker_client, session["id"]), 60,
             what="the session's container to be removed")
    if stack.kind == "swarm":
        assert session_services(docker_client, session["id"]) == []
    assert {v.name for v in docker_client.volumes.list()} <= volumes_before
    assert json.loads(stack.ckan_cli("sessions", "--json")) == []


CONFINED = """
import errno, json, os, socket
def reach(host, port):
    try:
        socket.create_connection((host, port), timeout=3).close()
        return "open"
    except OSError as e:
        return type(e).__name__
def write(path, mb):
    try:
        with open(path, "wb") as f:
            for _ in range(mb):
                f.write(bytes(1024 * 1024))
            f.flush()
            os.fsync(f.fileno())
        return "written"
    except OSError as e:
        return errno.errorcode[e.errno]
    finally:
        if os.path.exists(path):
            os.remove(path)
print(json.dumps({
    "reach": [reach(h, p) for h, p in TARGETS],
    "home": write(os.path.expanduser("~/big"), 260),
    "root": write("/opt/venv/planted", 1),
}))
"""


def test_compose_sessions_have_their_disk_limit_and_reach_no_host_port_or_other_container(
        compose_stack, docker_client, helper_image):
    """The hub container writes the host's firewall and mounts the home
    images in the host's namespaces (docker-compose.yml: privileged, pid:
    host): from inside a session, a listener on a host port and another
    container on the sessions network are closed while the hub's API
    answers, and writing past disk_limit (200M here) is ENOSPC."""
    stack, seed = compose_stack
    if stack.kind != "docker":
        pytest.skip("swarm enforces neither (docker/README.md)")
    from jupyterhub_service.session_network import bridge_interface, network_gateway

    network = docker_client.api.inspect_network(stack.sessions_network)
    gateway, br = network_gateway(network), bridge_interface(network)
    assert network["Options"]["com.docker.network.bridge.enable_icc"] == "false"
    hub = docker_client.containers.get(stack.container("jupyterhub"))
    hub_ip = hub.attrs["NetworkSettings"]["Networks"][stack.sessions_network]["IPAddress"]
    host_port = Canary("0.0.0.0")
    # a stand-in for another session: any container on the sessions network
    neighbour = docker_client.containers.run(
        helper_image, ["python3", "-m", "http.server", "8000"], detach=True,
        user="65534:65534", working_dir="/tmp", network=stack.sessions_network,
        name=f"{stack.project}-neighbour")
    try:
        neighbour.reload()
        neighbour_ip = neighbour.attrs["NetworkSettings"]["Networks"][
            stack.sessions_network]["IPAddress"]
        browser = Browser()
        final = browser.open_in_jupyter(stack.ckan_url, seed["dataset"])
        assert final.status_code == 200, final.text[:500]
        lab = Lab.from_url(browser.http, final.url)
        (session,) = json.loads(stack.ckan_cli("sessions", "--json"))
        (container,) = session_containers(docker_client, session["id"])
        assert container.attrs["HostConfig"]["ReadonlyRootfs"] is True
        homes = stack.storage / "session-homes"
        mounts = {m["Destination"]: m["Source"] for m in container.attrs["Mounts"]}
        home = Path(mounts["/home/jovyan"])  # <homes>/<session id, or the container's name>
        assert home.parent == homes and (homes / f"{home.name}.ext4").is_file()
        assert any(f" {home} ext4 " in line for line in open("/proc/self/mounts"))

        # positive controls (the session's start wrote the rules): the host
        # reaches its canary, the hub reaches the neighbour
        socket.create_connection((gateway, host_port.port), timeout=5).close()
        wait_for(lambda: host_port.hits == 1, 10, interval=0.05,
                 what="the canary to count the host's connection")
        hits = host_port.hits
        hub_reaches = ("import socket\ntry:\n    socket.create_connection("
                       f"({neighbour_ip!r}, 8000), timeout=5).close()\n    print('open')\n"
                       "except OSError as e:\n    print(type(e).__name__)")
        wait_for(lambda: stack.exec("jupyterhub", "python3", "-c", hub_reaches).strip()
                 == "open", 30, what="the neighbour to answer the hub")

        targets = [(gateway, host_port.port), (neighbour_ip, 8000), (hub_ip, 6000),
                   (hub_ip, 8000)]
        out, err = lab.execute(f"TARGETS = {targets!r}\n" + CONFINED, timeout=180)
        assert err is None, err
        seen = json.loads(out.strip().splitlines()[-1])
        assert seen["reach"] == ["ConnectionRefusedError"] * 4, seen
        assert host_port.hits == hits
        assert seen["home"] == "ENOSPC" and seen["root"] == "EROFS", seen
        # the rules the hub wrote into the host's firewall
        assert f"-A DOCKER-USER -i {br} -j JN-OUT-{br}" in iptables_rules("DOCKER-USER")
        rules = iptables_rules(f"JN-OUT-{br}")
        assert f"-A JN-OUT-{br} -s {hub_ip}/32 -j ACCEPT" in rules
        assert f"-A JN-OUT-{br} -d 169.254.0.0/16 -j REJECT " \
            "--reject-with icmp-port-unreachable" in rules
        assert rules[-1] == f"-A JN-OUT-{br} -j RETURN"

        assert f"stopped {session['id']}" in stack.ckan_cli("stop", session["id"])
        wait_for(lambda: not session_containers(docker_client, session["id"]), 60,
                 what="the session's container to be removed")
        wait_for(lambda: not any(home.name in p.name for p in homes.iterdir()), 30,
                 what="the home image to be removed")
        assert not any(f" {home} " in line for line in open("/proc/self/mounts"))
    finally:
        host_port.close()
        neighbour.remove(force=True)


WRITE_WORK = """
import os
os.makedirs("results", exist_ok=True)
open("results/table.csv", "w").write("a,b\\n1,2\\n")
open("made-here.bin", "wb").write(bytes(range(256)) * 40)
print("written")
"""

# run in the CKAN container: the bridge's internal file route, as CKAN's
# Save to portal calls it (over the backend network, with the bridge token)
BRIDGE_FILES = """
import base64, json, os, sys, urllib.error, urllib.parse, urllib.request
def get(session_id, path, max_bytes):
    url = (os.environ["CKAN_API_JUPYTERHUB"].rstrip("/") + f"/api/sessions/{session_id}/files?"
           + urllib.parse.urlencode({"path": path, "max_bytes": max_bytes}))
    req = urllib.request.Request(
        url, headers={"Authorization": "Bearer " + os.environ["CKAN_JUPYTERHUB_API_TOKEN"]})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return [r.status, base64.b64encode(r.read()).decode()]
    except urllib.error.HTTPError as e:
        return [e.code, json.loads(e.read())]
print(json.dumps([get(*call) for call in json.loads(sys.argv[1])]))
"""

# run in the hub container: the notes of a hub user's API tokens
TOKEN_NOTES = """
import json, sqlite3, sys
db = sqlite3.connect("/srv/jupyterhub/jupyterhub.sqlite")
rows = db.execute("select t.note from api_tokens t join users u on u.id = t.user_id "
                  "where u.name = ?", (sys.argv[1],)).fetchall()
print(json.dumps([note for (note,) in rows]))
"""


def test_compose_download_and_the_bridges_file_route_give_what_the_session_wrote(
        compose_stack, docker_client):
    """Issue 13 for container homes: the visitor's Download route zips what
    the session wrote (not data/), and the bridge's internal file route
    gives a file's exact bytes, 413 past max_bytes and 400 under data/.
    Docker reads the home image through the engine's mount namespace; swarm
    (no home images) reads through the session's own server with a token
    minted for it, and none of those tokens remains afterwards."""
    from jupyterhub_service.session_server_files import TOKEN_NOTE

    stack, seed = compose_stack
    browser = Browser()
    final = browser.open_in_jupyter(stack.ckan_url, seed["dataset"])
    assert final.status_code == 200, final.text[:500]
    lab = Lab.from_url(browser.http, final.url)
    hub_user, server = server_path(lab.base)
    (session,) = [s for s in json.loads(stack.ckan_cli("sessions", "--json"))
                  if s["hub_user"] == hub_user and s["server_name"] == server]
    try:
        out, err = lab.execute(WRITE_WORK)
        assert err is None and "written" in out, (out, err)
        made = bytes(range(256)) * 40

        resp = lab.http.get(f"{stack.hub_url}/services/bridge/session/{server}/download",
                            timeout=300)
        assert resp.status_code == 200, resp.text[:300]
        assert resp.headers["Content-Type"] == "application/zip"
        zf = zipfile.ZipFile(io.BytesIO(resp.content))
        names = zf.namelist()
        assert zf.read("results/table.csv") == b"a,b\n1,2\n"
        assert zf.read("made-here.bin") == made
        assert "start_here.ipynb" in names
        assert not [n for n in names if n.split("/")[0] == "data"], names

        calls = [[session["id"], "made-here.bin", 1_000_000],
                 [session["id"], "made-here.bin", 100],
                 [session["id"], "data/cities.csv", 1_000_000]]
        whole, over, data = json.loads(stack.exec(
            "ckan", "python3", "-c", BRIDGE_FILES, json.dumps(calls)).strip().splitlines()[-1])
        assert whole[0] == 200 and base64.b64decode(whole[1]) == made, whole[0]
        assert over[0] == 413 and over[1]["error"] == "too_large", over
        assert data[0] == 400 and data[1]["error"] == "bad_path", data

        notes = json.loads(stack.exec("jupyterhub", "python3", "-c", TOKEN_NOTES,
                                      hub_user).strip().splitlines()[-1])
        assert TOKEN_NOTE not in notes, notes
        if stack.kind == "swarm":
            # the reads went through the session's server: the hub minted
            # (and deleted) a token for its user for the zip and each file
            hub_log = subprocess.run(
                ["docker", "logs", stack.container("jupyterhub")], capture_output=True,
                text=True, timeout=60)
            logged = hub_log.stdout + hub_log.stderr
            assert logged.count(f"Service bridge requested API token for {hub_user}") >= 3
    finally:
        stack.ckan_cli("stop", session["id"])
        wait_for(lambda: not session_containers(docker_client, session["id"]), 60,
                 what="the session's container to be removed")


RQ_QUEUES = """
import json
from redis import Redis
from rq import Worker
workers = Worker.all(connection=Redis.from_url("redis://redis:6379/1"))
print(json.dumps(sorted(q for w in workers for q in w.queue_names())))
"""

COMMAND_LINES = """
import os
for pid in os.listdir("/proc"):
    if pid.isdigit():
        try:
            print(open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\\0", b" ").decode())
        except OSError:
            pass
"""


def test_the_compose_stack_runs_the_report_workers_and_the_scheduler(compose_stack):
    # issue 14: "the dev stack and the compose stack start them": the
    # ckan-reports service's max_report_runs (2) RQ workers are registered
    # in CKAN's Redis on the jupyter-reports queue, and its scheduler runs
    stack, _seed = compose_stack

    def report_workers() -> list[str]:
        out = stack.exec("ckan-reports", "python3", "-c", RQ_QUEUES)
        return [q for q in json.loads(out.strip().splitlines()[-1])
                if q.endswith("jupyter-reports")]

    wait_for(lambda: len(report_workers()) == 2, 180, interval=3,
             what="two RQ workers on the jupyter-reports queue")
    lines = stack.exec("ckan-reports", "python3", "-c", COMMAND_LINES).splitlines()
    assert any("jupyter scheduler" in line for line in lines), lines
