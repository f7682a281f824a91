"""A spawner that does no work, for the simulated-scale benchmark only.

Every "server" is the same tiny always-on HTTP server, started once inside
the hub process, which answers any path with 200 (JupyterLab's
``/api/status`` included). ``start()`` returns its URL at once and ``poll()``
always says running, so a launch costs only what the bridge and the hub do
around a spawn. Registered in ``benchmarks/noop_hub_config.py``, never in the
product's hub config.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jupyterhub
from jupyterhub.spawner import Spawner
from traitlets import Int

_server: ThreadingHTTPServer | None = None
_lock = threading.Lock()


class _StatusHandler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's naming)
        body = json.dumps({"started": "", "last_activity": "", "connections": 0,
                           "kernels": 0}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        # the hub warns about servers that do not say their version
        self.send_header("X-JupyterHub-Version", jupyterhub.__version__)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def _ensure_status_server(port: int) -> None:
    global _server
    with _lock:
        if _server is None:
            _server = ThreadingHTTPServer(("127.0.0.1", port), _StatusHandler)
            _server.daemon_threads = True
            threading.Thread(target=_server.serve_forever, daemon=True,
                             name="noop-status-server").start()


class NoopSpawner(Spawner):
    status_port = Int(
        8099,
        config=True,
        help="Port of the shared HTTP server every no-op 'server' points at.",
    )

    async def start(self):
        _ensure_status_server(self.status_port)
        return ("127.0.0.1", self.status_port)

    async def poll(self):
        return None

    async def stop(self, now=False):
        pass
