"""A deployment moving from JupyterHub 5 to 6 keeps its hub database: hub 6
migrates the records hub 5 wrote (``c.JupyterHub.upgrade_db``, with a copy of
the old file beside it) and serves launches at once.

Runs the real hub of each version from its own environment
(``dev/environments.sh hub5 hub6``); skipped when either is missing.
"""
from __future__ import annotations

import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest
import requests

from dev import stack as stack_module
from dev.stack import ROOT, Stack
from dev.testing import Bridge

HUB5 = ROOT / ".venvs" / "hub5" / "bin"
HUB6 = ROOT / ".venvs" / "hub6" / "bin"

pytestmark = pytest.mark.skipif(
    not ((HUB5 / "jupyterhub").exists() and (HUB6 / "jupyterhub").exists()),
    reason="needs .venvs/hub5 and .venvs/hub6 (dev/environments.sh hub5 hub6)")


def _revision(db: Path) -> str:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT version_num FROM alembic_version").fetchone()[0]


def _head(bin_dir: Path) -> str:
    """The newest database revision the hub in ``bin_dir`` knows."""
    return subprocess.run(
        [str(bin_dir / "python"), "-c",
         "import os, jupyterhub; from alembic.script import ScriptDirectory; "
         "print(ScriptDirectory(os.path.join(os.path.dirname(jupyterhub.__file__), "
         "'alembic')).get_current_head())"],
        check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def upgrade_stack():
    # a hub and bridge of its own (no CKAN), on ports no other stack uses
    stack = Stack(
        directory=ROOT / ".test-stack-upgrade",
        ckan_port=5140, hub_port=8140, bridge_port=6140, solr_port=8994,
        hub_api_port=8141, proxy_api_port=8142, ckan_db="ckan_e2e", redis_db="5",
        api_token="test-upgrade-token",
    )
    stack.stop()
    shutil.rmtree(stack.directory, ignore_errors=True)
    stack.prepare()
    yield stack
    stack.stop()  # the directory stays until the next run, logs included


def test_hub_6_migrates_hub_5s_database_and_serves_a_launch(upgrade_stack, monkeypatch):
    stack = upgrade_stack
    db = stack.hub_state / "jupyterhub.sqlite"
    bridge = Bridge(stack.bridge_url, stack.token)

    monkeypatch.setattr(stack_module, "VENV_BIN", HUB5)
    stack.start_hub()
    old = bridge.launch("ds-upgrade", user_id="guest-upgrade")
    assert old.status_code == 201, old.text
    stack.stop_hub()
    hub5_revision = _revision(db)
    assert hub5_revision == _head(HUB5)

    monkeypatch.setattr(stack_module, "VENV_BIN", HUB6)
    stack.start_hub()
    assert _revision(db) == _head(HUB6) != hub5_revision
    (backup,) = stack.hub_state.glob("jupyterhub.sqlite.*")
    assert _revision(backup) == hub5_revision

    # the session hub 5 was serving is gone with its server; a new launch
    # lands in JupyterLab on hub 6
    new = bridge.launch("ds-upgrade", user_id="guest-upgrade")
    assert new.status_code == 201, new.text
    assert new.json()["id"] != old.json()["id"]
    final = requests.Session().get(new.json()["launch_url"], timeout=120)
    assert final.status_code == 200
    assert "/lab" in final.url
    bridge.end_all()
