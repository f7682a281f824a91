"""A session launched from a notebook resource that nbformat had to upgrade
opens the upgraded, valid v4 copy; a valid notebook stays byte-identical;
the dataset's own files in ~/data are as published (issue 12)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote

import nbformat
import pytest

from dev.testing import open_lab

from .fileserver import FileServer, Route

DATA = Path(__file__).resolve().parents[2] / "ckanext" / "jupyternotebook" / "tests" / "data"
V3 = (DATA / "v3_rainfall.ipynb").read_bytes()
V4 = (DATA / "demo.ipynb").read_bytes()


@pytest.fixture
def files():
    srv = FileServer().start()
    srv.routes["/rainfall.ipynb"] = Route(body=V3)
    srv.routes["/demo.ipynb"] = Route(body=V4)
    yield srv
    srv.stop()


def test_a_session_launched_from_a_v3_notebook_opens_a_valid_v4_copy(bridge, files):
    resources = [
        {"id": "res-nb-v3", "name": "Rainfall v3.ipynb", "format": "ipynb", "hash": "nb-v3-1",
         "fetch_url": files.url("/rainfall.ipynb"), "source": "ckan"},
        {"id": "res-nb-v4", "name": "demo.ipynb", "format": "ipynb", "hash": "nb-v4-1",
         "fetch_url": files.url("/demo.ipynb"), "source": "ckan"},
    ]
    resp = bridge.launch("ds-nb-upgrade", resources=resources, notebook_resource_id="res-nb-v3")
    assert resp.status_code == 201, resp.text
    session = resp.json()
    assert unquote(session["launch_url"]).endswith("/lab/tree/Rainfall_v3.ipynb")
    lab = open_lab(session)

    on_disk = lab.read("Rainfall_v3.ipynb")  # the file's bytes, not the server's reading of them
    nb = nbformat.reads(on_disk.decode(), as_version=nbformat.NO_CONVERT)
    assert (nb.nbformat, nb.nbformat_minor) == (4, 5)
    nbformat.validate(nb)
    assert nb.cells[0].source == "# Rainfall by station"
    assert [c.cell_type for c in nb.cells] == ["markdown", "markdown", "code", "code", "code"]
    assert nb.cells[3].outputs[0].data["text/plain"] == "25.6"

    assert lab.read("demo.ipynb") == V4
    assert lab.read("data/Rainfall_v3.ipynb") == V3
