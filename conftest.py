"""Fixtures shared by every test directory.

Sections:
- CKAN side (ckanext-jupyternotebook core): the Solr stand-in and the CKAN
  fixtures below.
- Bridge / hub / end-to-end fixtures: added by their owners further down.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent

# --------------------------------------------------------------------------
# CKAN side: the Solr stand-in
#
# CKAN's pytest plugin builds the app in its pytest_sessionstart, and CKAN
# checks the Solr schema while doing so; so the stand-in must already answer
# then. pytest_configure runs before any pytest_sessionstart.

SOLR_STANDIN_PORT = 8984
_solr_standin = None


def pytest_configure(config):
    global _solr_standin
    if _solr_standin is not None:
        return
    from dev import solr_standin
    try:
        _solr_standin = solr_standin.start_in_thread(SOLR_STANDIN_PORT)
    except OSError:
        # Another test run on this machine holds the port, and may end before
        # this one: serve our own on a free port and point CKAN at it through
        # CKAN's own environment override of solr_url.
        _solr_standin = solr_standin.start_in_thread(0)
        port = _solr_standin.server_address[1]
        os.environ["CKAN_SOLR_URL"] = f"http://127.0.0.1:{port}/solr/ckan"


def pytest_unconfigure(config):
    global _solr_standin
    if _solr_standin is not None:
        _solr_standin.shutdown()
        _solr_standin.server_close()
        _solr_standin = None


# --------------------------------------------------------------------------
# Bridge / hub: a real JupyterHub with the bridge, started once per run on
# the ports test.ini names, and the end-to-end portal (a real CKAN server).

import fcntl  # noqa: E402
import shutil  # noqa: E402

# dev/ holds the stack launcher and the test helpers (a package, not
# installed; pytest puts this conftest's directory, the root, on sys.path)
from dev.stack import Stack  # noqa: E402
from dev.testing import Bridge  # noqa: E402

TEST_TOKEN = "test-bridge-token"
# runtime settings every test starts from
TEST_SETTINGS = {
    "timeout": 1200, "idle_timeout": 0, "max_guests": 10, "max_sessions": 20,
    "max_sessions_per_user": 3, "guest_access": True, "guest_rate_limit": 1000,
    "cpu_percent": 50, "memory_limit": "1G", "pool_size": 0,
    "max_guests_per_address": 30, "disk_limit": "2G", "session_egress": "public",
    "max_extended_age": 14400, "guest_extensions": False, "persistent_workspaces": False,
    "workspace_quota": "1G", "workspace_retention_days": 30,
}


@pytest.fixture(scope="session")
def hub_stack():
    """JupyterHub + bridge on 127.0.0.1:8050 / :6050 (as test.ini says), with
    the local spawner. Stopped, with every session server, at the end."""
    stack = Stack(
        directory=ROOT / ".test-stack",
        ckan_port=5050, hub_port=8050, bridge_port=6050, solr_port=SOLR_STANDIN_PORT,
        hub_api_port=8051, proxy_api_port=8052, ckan_db="ckan_e2e", redis_db="2",
        api_token=TEST_TOKEN,
        # 127.0.0.2 is the test reverse proxy's trusted source address
        # (tests/e2e/test_reverse_proxy.py); nothing else sends from it
        extra_env={"CKAN_JUPYTERHUB_GUEST_RATE": "1000",
                   "CKAN_JUPYTERHUB_TRUSTED_PROXIES": "127.0.0.2"},
    )
    # one test stack per machine: a second test run waits here instead of
    # stopping the first one's hub
    lock = open(ROOT / ".test-stack.lock", "w")
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        stack.stop()
        for stale in ("storage", "hub", "logs"):
            shutil.rmtree(stack.directory / stale, ignore_errors=True)
        stack.prepare()
        stack.start_hub(JUPYTERNOTEBOOK_REAPER_INTERVAL="1")
        yield stack
        stack.stop()
    finally:
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()


@pytest.fixture
def bridge(hub_stack):
    """The bridge's API; every session is ended and the runtime settings
    are reset after the test."""
    client = Bridge(hub_stack.bridge_url, TEST_TOKEN)
    client.put_settings(**TEST_SETTINGS)
    yield client
    # a test that stops the hub starts it again before this runs; a cleanup
    # that fails here fails this test, not a later one
    client.end_all()
    client.put_settings(**TEST_SETTINGS)


# --------------------------------------------------------------------------
# CKAN side: fixtures


@pytest.fixture
def clean_db(reset_db, migrate_db_for):
    """CKAN's clean_db, plus the activity plugin's tables (test.ini enables
    it). The first reset of a run drops every table and recreates only
    CKAN core's; ckanext/activity's own tests do the same."""
    import ckan.plugins as plugins

    reset_db()
    from ckan import model
    from sqlalchemy import inspect
    if not inspect(model.meta.engine).has_table(
            "jupyternotebook_alembic_version"):
        # the plugin's own tables (reports, issue 14), as `ckan db upgrade`
        # makes them
        _migrate_plugin(plugins, migrate_db_for, "jupyternotebook")
    if inspect(model.meta.engine).has_table("activity_alembic_version"):
        return  # migrated already; reset_db keeps the schema from now on
    import ckanext.activity
    if not (Path(ckanext.activity.__file__).parent / "migration").is_dir():
        return  # CKAN 2.10: the activity tables are core's, made by reset_db
    _migrate_plugin(plugins, migrate_db_for, "activity")


_DB_MADE = False


@pytest.fixture
def non_clean_db(request):
    """CKAN's non_clean_db with this project's tables: the database is made
    once per run (as clean_db makes it) and then left as it is. For tests
    whose objects are their own (factories give unique names) and that
    assert nothing about what else the database holds."""
    global _DB_MADE
    if not _DB_MADE:
        request.getfixturevalue("clean_db")
        _DB_MADE = True


def _migrate_plugin(plugins, migrate_db_for, name: str) -> None:
    if plugins.plugin_loaded(name):
        migrate_db_for(name)
    else:
        plugins.load(name)
        try:
            migrate_db_for(name)
        finally:
            plugins.unload(name)
