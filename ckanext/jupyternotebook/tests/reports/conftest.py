"""Fixtures of the report tests (CKAN side): a dataset with an uploaded
notebook that declares parameters, its editor, and the jupyter-reports
queue emptied around each test."""
from __future__ import annotations

import io
import json

import pytest

from ckan.tests import factories

NOTEBOOK = {
    "nbformat": 4, "nbformat_minor": 5, "metadata": {},
    "cells": [
        {"cell_type": "code", "id": "p", "metadata": {"tags": ["parameters"]},
         "execution_count": None, "outputs": [],
         "source": "year = 2020\nregion = 'north'\n"},
        {"cell_type": "code", "id": "c", "metadata": {},
         "execution_count": None, "outputs": [],
         "source": "limit = 5  # @param {type:\"integer\"}\nprint(year)\n"},
    ],
}


def upload(name: str, data: bytes):
    from werkzeug.datastructures import FileStorage
    return FileStorage(stream=io.BytesIO(data), filename=name)


@pytest.fixture
def editor_and_notebook(clean_db, with_plugins):
    """An organization editor, a dataset of the organization, and an
    uploaded notebook resource on it."""
    editor = factories.User()
    org = factories.Organization(
        users=[{"name": editor["name"], "capacity": "editor"}])
    dataset = factories.Dataset(owner_org=org["id"])
    from ckan.tests import helpers
    notebook = helpers.call_action(
        "resource_create", {"user": editor["name"], "ignore_auth": False},
        package_id=dataset["id"], name="weekly.ipynb", format="ipynb",
        url="weekly.ipynb",
        upload=upload("weekly.ipynb", json.dumps(NOTEBOOK).encode()))
    return editor, dataset, notebook


@pytest.fixture
def report_queue():
    """The jupyter-reports queue, empty (CKAN 2.10 has no clean_queues)."""
    from ckan.lib import jobs
    queue = jobs.get_queue("jupyter-reports")
    queue.empty()
    yield queue
    queue.empty()
