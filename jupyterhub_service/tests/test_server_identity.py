"""A launch is never handed a server it did not start (issue 10 item 18: a
launch landed on a 404).

JupyterHub counts any answer below 500 from a new server's address as "up",
404 included, so when the port given to a new session's server is held by
another server (a port handed out twice), the new server fails to bind and
exits while the hub reports it ready and routes the visitor to the other
server, which answers 404 under this session's URL. The spawner now waits
for its own server to answer under its own base URL, and fails the start
when its process ends first. The test makes the collision certain: the hub
is told to give sessions the port a stand-in server holds."""

from __future__ import annotations

import http.server
import threading

import pytest

from dev.testing import wait_until

HUB_ENV = {"JUPYTERNOTEBOOK_REAPER_INTERVAL": "1"}


class OtherServer(http.server.ThreadingHTTPServer):
    """Stands in for another session's server: 404 to every path."""

    def __init__(self):
        hits = self.hits = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                hits.append(self.path)
                self.send_error(404)

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.port = self.server_address[1]
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def close(self):
        self.shutdown()
        self.server_close()


@pytest.fixture
def taken_port(hub_stack):
    other = OtherServer()
    hub_stack.stop_hub()
    hub_stack.start_hub(f"--Spawner.port={other.port}", **HUB_ENV)
    yield other
    other.close()
    hub_stack.stop_hub()
    hub_stack.start_hub(**HUB_ENV)


def test_a_server_whose_port_another_server_holds_is_never_handed_out(bridge, taken_port):
    resp = bridge.launch("ds-port-taken", user_id="guest-port-taken")
    # before: 200 and a launch URL on which the visitor met the other
    # server's 404
    assert resp.status_code == 503, (resp.status_code, resp.text)
    assert resp.json()["error"] == "hub_unavailable"
    # the hub asked the other server, found it was not this session's, and
    # handed nothing out; the failed launch leaves no live session
    assert any(path.endswith("/api") for path in taken_port.hits), taken_port.hits
    assert wait_until(lambda: bridge.sessions() == [], timeout=30)
