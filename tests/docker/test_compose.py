"""The compose files validate with the example environment."""

from __future__ import annotations

import subprocess

import pytest

from session_harness import REPO, compose_command

pytestmark = pytest.mark.docker

@pytest.mark.parametrize(
    "files",
    [["docker-compose.yml"], ["docker-compose.yml", "docker-compose.local.yml"],
     ["docker-compose.yml", "docker-compose.swarm.yml"]],
    ids=["production", "local", "swarm"],
)
def test_compose_config_validates(files):
    args = [a for f in files for a in ("-f", f)]
    r = subprocess.run(
        [*compose_command(), "--env-file", ".env.example", *args, "config", "-q"],
        cwd=REPO, capture_output=True, text=True,
    )
    assert r.returncode == 0, r.stderr


def test_sessions_never_join_the_backend_network():
    r = subprocess.run(
        [*compose_command(), "--env-file", ".env.example", "config"],
        cwd=REPO, capture_output=True, text=True, check=True,
    )
    import yaml

    config = yaml.safe_load(r.stdout)
    assert set(config["services"]["jupyterhub"]["networks"]) == {"backend", "sessions"}
    for name in ("ckan", "db", "solr", "redis"):
        assert set(config["services"][name]["networks"]) == {"backend"}
    assert config["networks"]["backend"]["name"] == "ckan-backend"
    assert config["networks"]["sessions"]["name"] == "jupyter-sessions"


def test_the_swarm_override_makes_the_named_sessions_network_an_attachable_overlay():
    r = subprocess.run(
        [*compose_command(), "--env-file", ".env.example", "-f", "docker-compose.yml",
         "-f", "docker-compose.swarm.yml", "config"],
        cwd=REPO, capture_output=True, text=True, check=True,
    )
    import yaml

    config = yaml.safe_load(r.stdout)
    sessions = config["networks"]["sessions"]
    assert sessions == {"name": "jupyter-sessions", "driver": "overlay", "attachable": True}
    assert config["services"]["jupyterhub"]["environment"]["CKAN_JUPYTERHUB_SPAWNER"] == "swarm"
    assert set(config["services"]["jupyterhub"]["networks"]) == {"backend", "sessions"}


def _config(*files: str) -> dict:
    import yaml

    args = [a for f in files for a in ("-f", f)]
    r = subprocess.run(
        [*compose_command(), "--env-file", ".env.example", *args, "config"],
        cwd=REPO, capture_output=True, text=True, check=True,
    )
    return yaml.safe_load(r.stdout)


def test_the_hub_enforces_disk_limit_and_egress_in_the_hosts_namespaces():
    # what host_namespaces.py needs to mount home images and write the host's
    # firewall from the hub container; sessions cannot reach each other
    config = _config("docker-compose.yml")
    hub = config["services"]["jupyterhub"]
    assert hub["pid"] == "host"
    assert set(hub["cap_add"]) == {"SYS_ADMIN", "NET_ADMIN", "SYS_PTRACE"}
    assert not hub.get("privileged")
    assert hub["environment"]["JUPYTERNOTEBOOK_ENTER_HOST_NAMESPACES"] == "1"
    for name in ("CKAN_JUPYTERHUB_DISK_LIMIT", "CKAN_JUPYTERHUB_SESSION_EGRESS",
                 "CKAN_JUPYTERHUB_GUESTS_PER_ADDRESS"):
        assert name in hub["environment"]
    sessions = config["networks"]["sessions"]
    assert sessions["driver_opts"] == {"com.docker.network.bridge.enable_icc": "false"}
    for name in ("ckan", "db", "solr", "redis"):
        assert not config["services"][name].get("privileged")


def test_on_swarm_the_hub_enters_no_host_namespace():
    hub = _config("docker-compose.yml", "docker-compose.swarm.yml")["services"]["jupyterhub"]
    assert hub["environment"]["JUPYTERNOTEBOOK_ENTER_HOST_NAMESPACES"] == "0"
