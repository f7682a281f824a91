"""Reading a home through the session's own server (session_server_files.py)
when that server is hostile: a stand-in HTTP server answers as a session's
code could make it answer, and the bridge's reader keeps its bounds (zip
names inside the folder, no more bytes than listed or allowed, a deadline).
The real path, through the hub's proxy with a minted token, is tested in
tests/docker/test_compose_stack.py (swarm)."""

from __future__ import annotations

import io
import json
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

import pytest

from jupyterhub_service.errors import BridgeError
from jupyterhub_service.session_server_files import (
    INCOMPLETE,
    HomeZip,
    SessionServer,
    fetch_file,
    server_url,
)
from jupyterhub_service.settings import load
from jupyterhub_service.store import SessionRecord

TOKEN = "minted-for-this-server"


def entry(name, kind="file", size=None):
    return {"name": name, "type": kind, "size": size, "last_modified": "2024-05-01T10:00:00Z"}


class StandIn(BaseHTTPRequestHandler):
    """``folders``: path -> listed entries; ``files``: path -> bytes served
    (or a callable writing the body itself)."""

    folders: dict = {}
    files: dict = {}
    seen_tokens: list = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.seen_tokens.append(self.headers.get("Authorization"))
        path = unquote(urlsplit(self.path).path)
        if path.startswith("/api/contents/"):
            rel = path[len("/api/contents/"):].strip("/")
            if rel in self.folders:
                return self._send(json.dumps({"type": "directory", "name": rel,
                                              "content": self.folders[rel]}).encode())
            for folder, entries in self.folders.items():
                for e in entries:
                    if "/".join(p for p in (folder, e["name"]) if p) == rel:
                        return self._send(json.dumps({**e, "content": None}).encode())
        elif path.startswith("/files/") and path[len("/files/"):] in self.files:
            body = self.files[path[len("/files/"):]]
            if callable(body):
                self.send_response(200)
                self.end_headers()
                return body(self.wfile)
            return self._send(body)
        self.send_response(404)
        self.end_headers()

    def _send(self, body: bytes):
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def stand_in():
    class Handler(StandIn):
        folders, files, seen_tokens = {}, {}, []

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Handler, f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def zip_of(base: str, budget: int = 10**6) -> zipfile.ZipFile:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        HomeZip(SessionServer(base, TOKEN, 30), budget).fill(zf)
    return zipfile.ZipFile(io.BytesIO(buf.getvalue()))


def test_a_hostile_server_cannot_name_entries_outside_the_zip_or_send_more_than_it_listed(
        stand_in):
    handler, base = stand_in
    handler.folders = {
        "": [entry("../escape.txt", size=3), entry("..", "directory"), entry("a\\..\\b", size=1),
             entry("ok.txt", size=3), entry("data", "directory"), entry("sub", "directory")],
        "sub": [entry("inner.txt", size=5)],
        "data": [entry("original.csv", size=2)],
    }
    handler.files = {"ok.txt": b"abc" + b"x" * 100_000, "sub/inner.txt": b"inner",
                     "../escape.txt": b"bad", "data/original.csv": b"no"}
    zf = zip_of(base)
    assert zf.namelist() == ["ok.txt", "sub/", "sub/inner.txt"]
    assert zf.read("ok.txt") == b"abc"
    assert zf.read("sub/inner.txt") == b"inner"
    assert set(handler.seen_tokens) == {f"token {TOKEN}"}


def test_a_zip_past_what_a_session_can_hold_ends_saying_what_is_missing(stand_in):
    handler, base = stand_in
    handler.folders = {"": [entry("big.bin", size=100), entry("small.txt", size=4)]}
    handler.files = {"big.bin": b"b" * 100, "small.txt": b"tiny"}
    zf = zip_of(base, budget=10)
    assert zf.read("small.txt") == b"tiny"
    assert "big.bin" not in zf.namelist()
    assert "big.bin: 100 bytes" in zf.read(INCOMPLETE).decode()


def test_an_unanswered_first_listing_is_an_error_not_an_empty_zip():
    with pytest.raises(BridgeError) as err:
        zip_of("http://127.0.0.1:9/")
    assert err.value.status == 503 and err.value.code == "session_unavailable"


def test_a_file_longer_than_allowed_is_refused_whatever_size_was_listed(stand_in):
    handler, base = stand_in
    handler.folders = {"": [entry("claims-small.bin", size=10)]}
    handler.files = {"claims-small.bin": b"z" * 5000}
    server = SessionServer(base, TOKEN, 30)
    with pytest.raises(BridgeError) as err:
        fetch_file(server, ["claims-small.bin"], 100, 100, io.BytesIO())
    assert err.value.status == 413 and err.value.code == "too_large"
    out = io.BytesIO()
    assert fetch_file(server, ["claims-small.bin"], 10_000, 10_000, out) == 5000
    assert out.getvalue() == b"z" * 5000


def test_a_server_sending_a_byte_at_a_time_is_stopped_by_the_deadline(stand_in):
    handler, base = stand_in

    def drip(wfile):
        for _ in range(100):
            wfile.write(b".")
            wfile.flush()
            time.sleep(0.1)

    handler.folders = {"": [entry("slow.bin", size=100)]}
    handler.files = {"slow.bin": drip}
    started = time.monotonic()
    with pytest.raises(BridgeError) as err:
        fetch_file(SessionServer(base, TOKEN, 1), ["slow.bin"], 1000, 1000, io.BytesIO())
    assert err.value.status == 503
    assert time.monotonic() - started < 5


def test_the_server_is_reached_at_the_proxys_bind_address_on_loopback():
    settings = load({"CKAN_JUPYTERNOTEBOOK_URL": "https://hub.example.org",
                     "JUPYTERNOTEBOOK_HUB_BIND_URL": "http://0.0.0.0:8000",
                     "CKAN_JUPYTERHUB_BASE_URL": "/jupyter/"})
    rec = SessionRecord(hub_user="ckan-1", server_name="d-12345678")
    assert server_url(settings, rec) == "http://127.0.0.1:8000/jupyter/user/ckan-1/d-12345678/"
