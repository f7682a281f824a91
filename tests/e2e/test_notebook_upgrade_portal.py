"""A v3 notebook published on the portal (issue 12), through the real CKAN
(gunicorn), bridge, hub and JupyterLab: its preview renders, and "Run this
notebook" opens a valid v4 copy while the dataset keeps the file as
published."""

from __future__ import annotations

import io
import re
from pathlib import Path
from urllib.parse import unquote

import nbformat
import pytest
import requests

from dev.testing import Browser, Lab

V3 = (Path(__file__).resolve().parents[2] / "ckanext" / "jupyternotebook" / "tests" / "data"
      / "v3_rainfall.ipynb").read_bytes()


@pytest.fixture
def v3_resource(portal):
    res = portal.sysadmin.action.resource_create(
        package_id=portal.dataset, name="Rainfall v3.ipynb", format="ipynb",
        upload=("rainfall.ipynb", io.BytesIO(V3)))
    yield res
    portal.sysadmin.action.resource_delete(id=res["id"])


def test_a_v3_notebook_on_the_portal_is_previewed_and_runs_as_a_valid_v4_file(
        portal, bridge, v3_resource):
    res = v3_resource
    base = f"{portal.url}/dataset/{portal.dataset}/resource/{res['id']}"
    frame = requests.get(f"{base}/jupyter/preview", timeout=60)
    assert frame.status_code == 200
    assert "Rainfall by station" in frame.text
    assert "not a valid Jupyter notebook" not in frame.text

    browser = Browser()
    final = browser.submit(browser.get(base), rf"/resource/{res['id']}/jupyter$")
    assert final.status_code == 200, final.text[:500]
    m = re.search(r"/lab/tree/(.+?)(?:\?|$)", final.url)
    assert m, final.url
    path = unquote(m.group(1))
    lab = Lab.from_url(browser.http, final.url)
    on_disk = lab.read(path)  # the file's bytes, not the server's reading of them
    nb = nbformat.reads(on_disk.decode(), as_version=nbformat.NO_CONVERT)
    assert nb.nbformat == 4
    nbformat.validate(nb)
    assert nb.cells[0].source == "# Rainfall by station"
    assert lab.read(f"data/{path}") == V3
