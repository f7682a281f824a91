"""Fixtures shared by every test directory.

Sections:
- CKAN side (ckanext-jupyternotebook core): the Solr stand-in and the CKAN
  fixtures below.
- Bridge / hub / end-to-end fixtures: added by their owners further down.
"""
from __future__ import annotations

import json
import sys
import urllib.request
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


def _solr_answers(port: int) -> bool:
    url = f"http://127.0.0.1:{port}/solr/ckan/schema?wt=schema.xml"
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return b"ckan-" in response.read()
    except OSError:
        return False


def pytest_configure(config):
    global _solr_standin
    if _solr_standin is not None:
        return
    sys.path.insert(0, str(ROOT / "dev"))
    try:
        import solr_standin
    finally:
        sys.path.pop(0)
    try:
        _solr_standin = solr_standin.start_in_thread(SOLR_STANDIN_PORT)
    except OSError:
        # Another test run on this machine already serves it; share it.
        if not _solr_answers(SOLR_STANDIN_PORT):
            raise pytest.UsageError(
                f"port {SOLR_STANDIN_PORT} is taken by something that is not "
                "the Solr stand-in; test.ini's solr_url needs it")


def pytest_unconfigure(config):
    global _solr_standin
    if _solr_standin is not None:
        _solr_standin.shutdown()
        _solr_standin.server_close()
        _solr_standin = None
