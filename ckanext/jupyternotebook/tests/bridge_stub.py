"""A tiny stand-in for the bridge's settings/health/capacity/sessions API.

Only for narrow unit tests of CKAN's side (the push, the resync, the admin
page); the real bridge is tested through the ``hub_stack`` fixture.
"""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKEN = "test-bridge-token"

DEFAULTS = {
    "timeout": 1200, "idle_timeout": 0, "max_guests": 100, "max_sessions": 200,
    "max_sessions_per_user": 3, "guest_access": True, "guest_rate_limit": 3,
    "cpu_percent": 50, "memory_limit": "1G", "pool_size": 0,
    "max_guests_per_address": 30, "disk_limit": "2G", "session_egress": "public",
}


class BridgeStub:
    def __init__(self, port: int):
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.settings = dict(DEFAULTS)
        self.updated_at = "2024-01-01T00:00:00Z"
        self.puts: list[dict] = []
        self.deleted: list[str] = []
        self.sessions: list[dict] = []
        self.capacity = {"guests": {"active": 0, "max": 100},
                         "users": {"active": 0},
                         "sessions": {"active": 0, "max": 200},
                         "pool": {"ready": 0, "size": 0}}
        self._server = None
        self._thread = None

    # lifecycle

    def start(self) -> "BridgeStub":
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status, body=None):
                data = b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                if body is not None:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _authorized(self):
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    self._send(401, {"error": "unauthorized", "message": "no"})
                    return False
                return True

            def do_GET(self):
                if not self._authorized():
                    return
                path = self.path.split("?")[0]
                if path == "/api/health":
                    self._send(200, {"status": "ok", "hub": "ok",
                                     "version": "stub"})
                elif path == "/api/settings":
                    self._send(200, stub.settings_doc())
                elif path == "/api/capacity":
                    self._send(200, stub.capacity)
                elif path == "/api/sessions":
                    self._send(200, {"sessions": stub.sessions})
                elif path.startswith("/api/sessions/"):
                    sid = path.rsplit("/", 1)[1]
                    found = [s for s in stub.sessions if s["id"] == sid]
                    if found:
                        self._send(200, found[0])
                    else:
                        self._send(404, {"error": "not_found",
                                         "message": "no such session"})
                else:
                    self._send(404, {"error": "not_found", "message": path})

            def do_PUT(self):
                if not self._authorized():
                    return
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                stub.puts.append(body)
                stub.settings.update({k: v for k, v in body.items()
                                      if k in DEFAULTS})
                stub.updated_at = f"2024-01-01T00:00:{len(stub.puts):02d}Z"
                self._send(200, stub.settings_doc())

            def do_DELETE(self):
                if not self._authorized():
                    return
                sid = self.path.rsplit("/", 1)[1]
                before = len(stub.sessions)
                stub.sessions = [s for s in stub.sessions if s["id"] != sid]
                if len(stub.sessions) == before:
                    self._send(404, {"error": "not_found", "message": sid})
                    return
                stub.deleted.append(sid)
                self.send_response(204)
                self.end_headers()

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(10)
            self._server = None

    def settings_doc(self) -> dict:
        return {**self.settings, "updated_at": self.updated_at}
