"""The bridge turns away callers from the sessions network, token or not.

In the compose stack the bridge's port is on the hub container, which also
sits on the sessions network; a session must not even get to try a token.
(The same refusal is checked from inside a real session container by
tests/docker/test_compose_stack.py.)
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from tornado.testing import AsyncHTTPTestCase

from jupyterhub_service.bridge import HTTP_SERVER_OPTIONS, make_app
from jupyterhub_service.hub_api import HubAPI
from jupyterhub_service.settings import load
from jupyterhub_service.store import Store

TOKEN = "peer-test-token"


class _Bridge(AsyncHTTPTestCase):
    refused: tuple = ()

    def get_app(self):
        self.state = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.state, True)
        settings = load({"CKAN_JUPYTERHUB_API_TOKEN": TOKEN,
                         "JUPYTERNOTEBOOK_STATE_DIR": str(self.state)})
        # nothing listens there: these requests never reach the hub
        hub = HubAPI("http://127.0.0.1:9/hub/api", "unused")
        return make_app(settings, Store(settings.bridge_db_url), hub,
                        refused_networks=self.refused)

    def get_httpserver_options(self):
        return HTTP_SERVER_OPTIONS  # as the bridge's main() listens

    def settings_with(self, token: str | None):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.fetch("/api/settings", headers=headers)


class TestRefusedNetwork(_Bridge):
    # the test client connects from 127.0.0.1
    refused = ("127.0.0.0/8",)

    def test_a_caller_on_the_sessions_network_gets_403_even_with_the_right_token(self):
        r = self.settings_with(TOKEN)
        assert r.code == 403
        assert b'"forbidden"' in r.body

    def test_a_forwarded_for_header_does_not_get_it_through(self):
        r = self.fetch("/api/settings", headers={
            "Authorization": f"Bearer {TOKEN}", "X-Forwarded-For": "10.1.2.3",
            "X-Real-Ip": "10.1.2.3"})
        assert r.code == 403


class TestOtherNetwork(_Bridge):
    refused = ("172.16.0.0/12",)

    def test_a_caller_elsewhere_still_needs_the_token(self):
        assert self.settings_with(None).code == 401
        assert self.settings_with("wrong").code == 401
        assert self.settings_with(TOKEN).code == 200
