"""A small, real HTTP server that speaks the bridge API, for CKAN-side tests.

It checks the Bearer token, records every request, keeps sessions in memory
and can be told to answer one call with an error (429, 503...). The
end-to-end tests use the real bridge instead.
"""
from __future__ import annotations

import datetime as dt
import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


def _iso(when: dt.datetime) -> str:
    return when.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")


class SessionBridgeStub:
    def __init__(self, token: str = "test-bridge-token",
                 hub_url: str = "http://127.0.0.1:8050"):
        self.token = token
        self.hub_url = hub_url
        self.requests: list[dict[str, Any]] = []
        self.sessions: dict[str, dict[str, Any]] = {}
        self.overrides: dict[tuple[str, str], tuple[int, Any, dict]] = {}
        self.capacity = {"guests": {"active": 0, "max": 100},
                         "users": {"active": 0},
                         "sessions": {"active": 0, "max": 200},
                         "pool": {"ready": 0, "size": 0}}
        self.settings: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> "SessionBridgeStub":
        threading.Thread(target=self._server.serve_forever,
                         daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def respond(self, method: str, path: str, status: int,
                body: Any = None, headers: dict | None = None) -> None:
        """Answer the next calls of ``method path`` with this response."""
        self.overrides[(method, path)] = (status, body, headers or {})

    def add_session(self, user_id: str, dataset_id: str = "d1",
                    dataset_name: str = "dataset", user_kind: str = "user",
                    minutes_left: int = 20) -> dict[str, Any]:
        session_id = uuid.uuid4().hex[:12]
        now = dt.datetime.now(dt.timezone.utc)
        server_name = "d-" + dataset_id.replace("-", "")[:8]
        session = {
            "id": session_id, "user_id": user_id, "user_kind": user_kind,
            "hub_user": f"ckan-{user_id}" if user_kind == "user"
            else f"guest-{user_id}",
            "server_name": server_name, "dataset_id": dataset_id,
            "dataset_name": dataset_name, "status": "ready",
            "started_at": _iso(now),
            "expires_at": _iso(now + dt.timedelta(minutes=minutes_left)),
            "launch_url": f"{self.hub_url}/hub/login?ticket=t-{session_id}"
                          f"&next=/user/x/{server_name}/lab",
        }
        with self._lock:
            self.sessions[session_id] = session
        return session

    def calls(self, method: str, path: str) -> list[dict[str, Any]]:
        return [r for r in self.requests
                if r["method"] == method and r["path"] == path]

    def _handle(self, method: str, path: str, query: dict, headers: Any,
                body: Any) -> tuple[int, Any, dict]:
        self.requests.append({"method": method, "path": path, "query": query,
                              "headers": dict(headers), "json": body})
        if headers.get("Authorization") != f"Bearer {self.token}":
            return 401, {"error": "unauthorized", "message": "bad token"}, {}
        if (method, path) in self.overrides:
            return self.overrides[(method, path)]
        if path == "/api/sessions" and method == "POST":
            user = body["user"]
            for session in self.sessions.values():
                if (session["user_id"] == user["id"]
                        and session["dataset_id"] == body["dataset"]["id"]):
                    return 200, session, {}
            session = self.add_session(
                user["id"], body["dataset"]["id"], body["dataset"]["name"],
                user["kind"])
            return 201, session, {}
        if path == "/api/sessions" and method == "GET":
            user_id = query.get("user_id", [None])[0]
            found = [s for s in self.sessions.values()
                     if user_id is None or s["user_id"] == user_id]
            return 200, {"sessions": found}, {}
        if path.startswith("/api/sessions/"):
            session_id = path.rsplit("/", 1)[1]
            if session_id not in self.sessions:
                return 404, {"error": "not_found",
                             "message": "no such session"}, {}
            if method == "DELETE":
                del self.sessions[session_id]
                return 204, None, {}
            return 200, self.sessions[session_id], {}
        if path == "/api/capacity":
            return 200, self.capacity, {}
        if path == "/api/settings":
            if method == "PUT":
                self.settings.update(body)
            return 200, self.settings, {}
        if path == "/api/health":
            return 200, {"status": "ok", "hub": "ok", "version": "stub"}, {}
        return 404, {"error": "not_found", "message": path}, {}

    def _handler(self):
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _serve(self):
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode("utf-8", "replace")
                status, answer, headers = stub._handle(
                    self.command, parts.path, parse_qs(parts.query),
                    self.headers, body)
                payload = b"" if answer is None else (
                    answer if isinstance(answer, bytes)
                    else json.dumps(answer).encode())
                self.send_response(status)
                if payload:
                    self.send_header("Content-Type", "application/json")
                for name, value in headers.items():
                    self.send_header(name, str(value))
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = _serve

        return Handler
