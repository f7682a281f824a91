"""The one stand-in for the bridge API in CKAN-side tests.

A small, real HTTP server: it checks the Bearer token, keeps sessions and
settings in memory, records every request, can be told to answer a call with
an error (``respond``), to refuse settings (``refuse_puts``) or to hold
launches (``launches_wait_for``), and can be stopped and started again on the
same port (the bridge going down and coming back).

It is held to ``jupyterhub_service/openapi.json``: a request the real bridge
would refuse (a body that does not match the operation's schema, an unknown
route) is answered 400/404 as the bridge would, and every such mismatch, and
every answer of the stub that does not match the document, is recorded in
``violations``; the fixtures fail a test that leaves any. The real bridge is
exercised by the ``hub_stack`` tests and the end-to-end tests.
"""
from __future__ import annotations

import copy
import datetime as dt
import json
import re
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jsonschema

from jupyterhub_service import settings as bridge_settings

OPENAPI = Path(__file__).resolve().parents[3] / "jupyterhub_service" / "openapi.json"

# the real bridge's runtime settings and defaults, so a setting added there
# is never missing here
DEFAULTS = {short: bridge_settings.validate_runtime(short, bridge_settings.TABLE[short].default)
            for short in bridge_settings.RUNTIME_KEYS}


def _iso(when: dt.datetime) -> str:
    return when.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")


def _json_schema(node: Any) -> Any:
    """OpenAPI 3.0's ``nullable`` as JSON Schema's ``type: [..., "null"]``."""
    if isinstance(node, list):
        return [_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {k: _json_schema(v) for k, v in node.items() if k != "nullable"}
    if node.get("nullable") and "type" in node:
        out["type"] = [node["type"], "null"]
    return out


class Contract:
    """The operations of openapi.json, and their request/response schemas."""

    def __init__(self, path: Path = OPENAPI):
        document = json.loads(path.read_text())
        self.components = _json_schema(document.get("components", {}))
        self.routes = []
        for template, operations in document["paths"].items():
            pattern = re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$")
            for method, operation in operations.items():
                if isinstance(operation, dict) and "responses" in operation:
                    self.routes.append((pattern, method.upper(), operation))

    def operation(self, method: str, path: str) -> dict | None:
        for pattern, verb, operation in self.routes:
            if verb == method and pattern.match(path):
                return operation
        return None

    def problems(self, schema: dict | None, body: Any) -> list[str]:
        if schema is None:
            return []
        full = {**_json_schema(schema), "components": self.components}
        validator = jsonschema.Draft7Validator(full)
        return [f"{'/'.join(map(str, e.path)) or 'body'}: {e.message}"
                for e in validator.iter_errors(body)]

    @staticmethod
    def request_schema(operation: dict) -> dict | None:
        return (operation.get("requestBody", {}).get("content", {})
                .get("application/json", {}).get("schema"))

    @staticmethod
    def response_schema(operation: dict, status: int) -> dict | None:
        answer = operation["responses"].get(str(status), {})
        return answer.get("content", {}).get("application/json", {}).get("schema")


class BridgeStub:
    contract = Contract()

    def __init__(self, token: str = "test-bridge-token",
                 hub_url: str = "http://127.0.0.1:8050", port: int = 0):
        self.token = token
        self.hub_url = hub_url
        self.requests: list[dict[str, Any]] = []
        self.violations: list[str] = []
        self.sessions: dict[str, dict[str, Any]] = {}
        self.deleted: list[str] = []
        #: user_id -> workspace (GET /api/workspaces), and their zips' bytes
        self.workspaces: dict[str, dict[str, Any]] = {}
        self.workspace_zips: dict[str, bytes] = {}
        self.overrides: dict[tuple[str, str], tuple[int, Any, dict]] = {}
        self.capacity = {"guests": {"active": 0, "max": 100},
                         "users": {"active": 0},
                         "sessions": {"active": 0, "max": 200},
                         "pool": {"ready": 0, "size": 0}}
        self.settings: dict[str, Any] = dict(DEFAULTS)
        self.updated_at: str | None = "2024-01-01T00:00:00Z"
        self.puts: list[dict] = []
        #: when set, PUT /api/settings is refused (400) with this message
        self.refuse_puts: str | None = None
        #: when set, launches wait until it is set (a slow bridge)
        self.launches_wait_for: threading.Event | None = None
        self._lock = threading.Lock()
        self._server = self._bind(port)
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"

    # lifecycle

    def _bind(self, port: int) -> ThreadingHTTPServer:
        ThreadingHTTPServer.allow_reuse_address = True
        server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        server.daemon_threads = True
        return server

    def start(self) -> "BridgeStub":
        if self._server is None:  # started again after stop(): same port
            self._server = self._bind(self.port)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # what tests set up and look at

    def respond(self, method: str, path: str, status: int,
                body: Any = None, headers: dict | None = None) -> None:
        """Answer the next calls of ``method path`` with this response."""
        self.overrides[(method, path)] = (status, body, headers or {})

    def add_session(self, user_id: str, dataset_id: str = "d1",
                    dataset_name: str = "dataset", user_kind: str = "user",
                    minutes_left: int = 20, **fields: Any) -> dict[str, Any]:
        session_id = fields.pop("id", None) or uuid.uuid4().hex[:12]
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
            "seconds_left": max(0, minutes_left * 60),
            "launch_url": f"{self.hub_url}/hub/login?ticket=t-{session_id}"
                          f"&next=/user/x/{server_name}/lab",
            **fields,
        }
        with self._lock:
            self.sessions[session_id] = session
        return session

    def calls(self, method: str, path: str) -> list[dict[str, Any]]:
        return [r for r in self.requests
                if r["method"] == method and r["path"] == path]

    def settings_doc(self) -> dict:
        return {**self.settings, "updated_at": self.updated_at}

    # the API

    def _handle(self, method: str, path: str, query: dict, headers: Any,
                body: Any) -> tuple[int, Any, dict]:
        self.requests.append({"method": method, "path": path, "query": query,
                              "headers": dict(headers), "json": body})
        if headers.get("Authorization") != f"Bearer {self.token}":
            return 401, {"error": "unauthorized", "message": "bad token"}, {}
        operation = self.contract.operation(method, path)
        if operation is None:
            self.violations.append(f"{method} {path}: not in openapi.json")
            return 404, {"error": "not_found", "message": path}, {}
        problems = self.contract.problems(
            self.contract.request_schema(operation), body)
        if problems:
            self.violations.append(f"{method} {path}: {'; '.join(problems)}")
            return 400, {"error": "invalid", "message": "; ".join(problems)}, {}
        if (method, path) in self.overrides:
            # a test making the bridge misbehave on purpose: its answer is
            # not held to the document, the request above still is
            return self.overrides[(method, path)]
        status, answer, extra = self._answer(method, path, query, body)
        if str(status) not in operation["responses"]:
            self.violations.append(f"{method} {path}: the stub answered {status}, "
                                   "which openapi.json does not list")
        for problem in self.contract.problems(
                self.contract.response_schema(operation, status), answer):
            self.violations.append(f"{method} {path} answer {status}: {problem}")
        return status, answer, extra

    def _answer(self, method, path, query, body) -> tuple[int, Any, dict]:
        if path == "/api/sessions" and method == "POST":
            if self.launches_wait_for is not None:
                self.launches_wait_for.wait(60)
            user = body["user"]
            for session in self.sessions.values():
                if (session["user_id"] == user["id"]
                        and session["dataset_id"] == body["dataset"]["id"]):
                    return 200, session, {}
            session = self.add_session(
                user["id"], body["dataset"]["id"],
                body["dataset"].get("name", ""), user["kind"])
            return 201, session, {}
        if path == "/api/sessions":
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
                self.deleted.append(session_id)
                return 204, None, {}
            return 200, self.sessions[session_id], {}
        if path == "/api/workspaces":
            user_id = query.get("user_id", [None])[0]
            found = [w for w in self.workspaces.values()
                     if user_id is None or w["user_id"] == user_id]
            return 200, {"workspaces": sorted(found, key=lambda w: -w["size"])}, {}
        if path.startswith("/api/workspaces/"):
            user_id = path.split("/")[3]
            if user_id not in self.workspaces:
                return 404, {"error": "not_found", "message": "no workspace"}, {}
            if method == "DELETE":
                if any(s["user_id"] == user_id for s in self.sessions.values()):
                    return 409, {"error": "session_live",
                                 "message": "a session of the user is live"}, {}
                del self.workspaces[user_id]
                return 204, None, {}
            return 200, self.workspace_zips.get(user_id, b"PK\x05\x06" + b"\0" * 18), {}
        if path == "/api/capacity":
            return 200, copy.deepcopy(self.capacity), {}
        if path == "/api/settings" and method == "PUT":
            self.puts.append(body)
            if self.refuse_puts:
                return 400, {"error": "invalid", "message": self.refuse_puts}, {}
            self.settings.update({k: v for k, v in body.items() if k in DEFAULTS})
            self.updated_at = f"2024-01-01T00:00:{len(self.puts):02d}Z"
            return 200, self.settings_doc(), {}
        if path == "/api/settings":
            return 200, self.settings_doc(), {}
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
