"""Session ids name the session's directory, home image and container
labels: every id the bridge makes must be a key the homes accept, or the
reconciler takes the home for an orphan and removes it under the running
session (a post-stop CI failure: one token_urlsafe id in 32 starts with
'-' or '_')."""

from __future__ import annotations

import asyncio

import pytest

from jupyterhub_service.admission import Admission
from jupyterhub_service.container_home import ContainerHomeMixin
from jupyterhub_service.session_disk import KEY
from jupyterhub_service.settings import load
from jupyterhub_service.store import AsyncStore, Store


def test_every_session_the_admission_records_has_an_id_that_names_a_home(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'bridge.sqlite'}")
    rt = {**load({}).runtime_defaults(), "max_sessions": 10_000, "max_sessions_per_user": 10}

    async def reserve_many(n):
        admission = Admission(AsyncStore(store))
        ids = []
        for i in range(n):
            req = {"user": {"kind": "user", "id": f"u{i}", "name": f"user{i}"},
                   "dataset": {"id": f"ds-{i}", "name": "demo"}, "client_ip": "127.0.0.1"}
            ids.append((await admission.reserve(req, rt)).record.id)
        return ids

    # the old ids gave one in 32 a leading '-' or '_': 400 draw one with
    # probability 1 - (62/64)**400 > 0.9999
    ids = asyncio.run(reserve_many(400))
    assert len(set(ids)) == 400
    assert [i for i in ids if not KEY.match(i)] == []
    assert all(i == i.lower() for i in ids)


class _Spawner(ContainerHomeMixin):
    object_name = "jupyter-guest-1--d-1"
    session_id = ""


@pytest.mark.parametrize("session_id", ["", "-leading-dash", "_leading", ".hidden", "a/b"])
def test_a_container_home_is_never_named_after_anything_but_its_session(session_id):
    spawner = _Spawner()
    spawner.session_id = session_id
    with pytest.raises(ValueError, match="cannot name a home"):
        spawner._home_key()


def test_a_container_home_is_named_after_its_session():
    spawner = _Spawner()
    spawner.session_id = "0123abcd"
    assert spawner._home_key() == "0123abcd"
