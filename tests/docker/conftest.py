"""Fixtures for the tests that run against the real Docker engine.

Every test here is marked ``docker`` and skips when ``docker info`` fails.
The images are built (docker/build-images.sh) when missing; the hub is a real
``jupyterhub`` process on the host with the session spawner under test.
"""

from __future__ import annotations

import secrets
import subprocess

import pytest

from session_harness import REPO

SINGLEUSER_IMAGE = "ckanext-jupyternotebook/singleuser:latest"
HUB_IMAGE = "ckanext-jupyternotebook/hub:latest"
BASE_IMAGE = "ckanext-jupyternotebook/base:bookworm"


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "docker: needs a Docker engine (skipped when `docker info` fails)"
    )


def _docker_answers() -> bool:
    try:
        return subprocess.run(
            ["docker", "info"], capture_output=True, timeout=30
        ).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="session")
def docker_client():
    if not _docker_answers():
        pytest.skip("no Docker engine answers (docker info failed)")
    import docker

    client = docker.from_env(timeout=120)
    yield client
    client.close()


def _image_exists(client, name: str) -> bool:
    import docker

    try:
        client.images.get(name)
        return True
    except docker.errors.ImageNotFound:
        return False


@pytest.fixture(scope="session")
def images(docker_client):
    """Every image of the compose stack, as `make images` builds them: side
    by side when missing or stale (docker/build-images.sh skips those built
    from the current sources)."""
    subprocess.run(
        ["bash", str(REPO / "docker" / "build-images.sh")],
        check=True,
        timeout=2400,
    )
    return {"singleuser": SINGLEUSER_IMAGE, "hub": HUB_IMAGE}


@pytest.fixture(scope="session")
def singleuser_image(images):
    return images["singleuser"]


@pytest.fixture(scope="session")
def hub_image(images):
    return images["hub"]


@pytest.fixture(scope="session")
def helper_image(docker_client, singleuser_image):
    """A small image with python3 for stand-in service containers."""
    for name in ("python:3.11-slim-bookworm", BASE_IMAGE):
        if _image_exists(docker_client, name):
            return name
    return singleuser_image


@pytest.fixture(scope="session")
def run_id():
    return secrets.token_hex(3)


@pytest.fixture(scope="session")
def backend_db(docker_client, helper_image, run_id):
    """A service container named ``db`` on a network playing CKAN's backend."""
    network = docker_client.networks.create(f"jn-test-backend-{run_id}", driver="bridge")
    container = docker_client.containers.run(
        helper_image,
        ["python3", "-m", "http.server", "5432"],
        name=f"jn-test-db-{run_id}",
        network=network.name,
        detach=True,
        user="65534:65534",
        working_dir="/tmp",
    )
    network.disconnect(container)
    network.connect(container, aliases=["db"])
    container.reload()
    ip = container.attrs["NetworkSettings"]["Networks"][network.name]["IPAddress"]
    yield {"network": network.name, "name": container.name, "ip": ip, "port": 5432}
    container.remove(force=True)
    network.remove()


@pytest.fixture(scope="session")
def swarm(docker_client):
    """A single-node swarm; left as found (``leave --force`` only if we made it)."""
    state = docker_client.info()["Swarm"]["LocalNodeState"]
    had_gwbridge = bool(docker_client.networks.list(names=["docker_gwbridge"]))
    created = False
    if state != "active":
        try:
            docker_client.swarm.init(advertise_addr="127.0.0.1", listen_addr="127.0.0.1:2377")
        except Exception as e:  # noqa: BLE001 - reported as a skip reason
            pytest.skip(f"docker swarm init failed here: {e}")
        created = True
    yield
    if created:
        docker_client.swarm.leave(force=True)
        if not had_gwbridge:
            for n in docker_client.networks.list(names=["docker_gwbridge"]):
                n.remove()
