"""Save to portal's first step with the docker spawner: the bridge reads one
file of a container's home from the loop-mounted home image on the host,
without following a symlink the session planted."""

from __future__ import annotations

import pytest

from session_harness import docker_stack
from dev.testing import Bridge, open_lab

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def docker_hub(images, hub_stack, docker_client, run_id):
    """Hub + bridge with the docker spawner (no CKAN: the bridge is called
    directly)."""
    with docker_stack("files", 8095, hub_stack, docker_client, run_id) as stack:
        yield stack


def test_a_file_of_a_containers_home_is_read_and_links_are_refused(docker_hub):
    bridge = Bridge(docker_hub.bridge_url, docker_hub.token)
    sess = bridge.launch("ds-files-docker", kind="user", user_id="user-files-docker").json()
    assert sess["status"] == "ready", sess
    try:
        out, err = open_lab(sess).execute(
            "import os\n"
            "open('made-here.bin', 'wb').write(bytes(range(256)) * 10)\n"
            "os.symlink('/etc/hostname', 'host-link')\n"
            "print('ok')\n")
        assert err is None and "ok" in out, (out, err)

        got = bridge.call("GET", f"/api/sessions/{sess['id']}/files",
                          params={"path": "made-here.bin", "max_bytes": 4096})
        assert got.status_code == 200, got.text
        assert got.content == bytes(range(256)) * 10

        link = bridge.call("GET", f"/api/sessions/{sess['id']}/files",
                           params={"path": "host-link"})
        assert link.status_code == 400 and link.json()["error"] == "bad_path"

        big = bridge.call("GET", f"/api/sessions/{sess['id']}/files",
                          params={"path": "made-here.bin", "max_bytes": 100})
        assert big.status_code == 413 and big.json()["error"] == "too_large"
    finally:
        bridge.end_all()
