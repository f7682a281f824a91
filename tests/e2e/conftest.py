"""The portal for end-to-end tests: a real CKAN server (gunicorn, its own
database) in front of the test hub and bridge."""

from __future__ import annotations

import pytest
from ckanapi import RemoteCKAN


class Portal:
    def __init__(self, stack, seed):
        self.stack = stack
        self.url = stack.ckan_url
        self.seed = seed
        self.dataset = seed["dataset"]
        self.sysadmin = RemoteCKAN(self.url, apikey=seed["api_token"])

    def api(self, token: str | None = None) -> RemoteCKAN:
        return RemoteCKAN(self.url, apikey=token)


@pytest.fixture(scope="session")
def portal(hub_stack):
    seed = hub_stack.init_ckan()
    hub_stack.start_ckan()
    yield Portal(hub_stack, seed)
    hub_stack.stop_process("ckan")
