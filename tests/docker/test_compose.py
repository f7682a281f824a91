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
