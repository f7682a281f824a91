"""Download my work with the docker spawner: the visitor's route zips the
container's home from the loop-mounted home image on the host, without
what the session planted to reach outside it."""

from __future__ import annotations

import io
import json
import zipfile

import pytest

from session_harness import docker_stack
from dev.testing import Bridge, open_lab, server_path

pytestmark = pytest.mark.docker

NOTEBOOK = {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


@pytest.fixture(scope="module")
def docker_hub(images, hub_stack, docker_client, run_id):
    """Hub + bridge with the docker spawner (no CKAN: the bridge is called
    directly)."""
    with docker_stack("download", 8115, hub_stack, docker_client, run_id) as stack:
        yield stack


def test_download_zips_the_containers_home_without_links_or_data(docker_hub):
    bridge = Bridge(docker_hub.bridge_url, docker_hub.token)
    sess = bridge.launch("ds-download-docker").json()
    assert sess["status"] == "ready", sess
    try:
        lab = open_lab(sess)
        assert lab.write("edited.ipynb", json.dumps(NOTEBOOK)).status_code in (200, 201)
        out, err = lab.execute(
            "import os\n"
            "os.makedirs('results', exist_ok=True)\n"
            "open('results/table.csv', 'w').write('a,b\\n1,2\\n')\n"
            "os.symlink('/etc/hostname', 'host-link')\n"
            "os.mkfifo('a-fifo')\n"
            "print('ok')\n")
        assert err is None and "ok" in out, (out, err)
        _user, server = server_path(lab.base)
        resp = lab.http.get(f"{docker_hub.hub_url}/services/bridge/session/{server}/download",
                            timeout=120)
        assert resp.status_code == 200, resp.text[:300]
        zf = zipfile.ZipFile(io.BytesIO(resp.content))
        names = zf.namelist()
        assert json.loads(zf.read("edited.ipynb")) == NOTEBOOK
        assert zf.read("results/table.csv") == b"a,b\n1,2\n"
        assert "start_here.ipynb" in names
        assert not [n for n in names if n.split("/")[0] in ("data", ".cache", ".local")], names
        assert "host-link" not in names and "a-fifo" not in names, names
    finally:
        bridge.end_all()
