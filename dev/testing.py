"""Helpers the tests use to drive the real pieces: the bridge's API, a
browser-like HTTP client for CKAN and the hub, and JupyterLab's REST and
kernel APIs. Not part of the installed package.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import time
import uuid
from html.parser import HTMLParser
from urllib.parse import urljoin, urlparse

import requests
import websocket


class Bridge:
    """The bridge's API with the shared token."""

    def __init__(self, url: str, token: str):
        self.url = url.rstrip("/")
        self.token = token
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {token}"

    def call(self, method: str, path: str, **kw) -> requests.Response:
        kw.setdefault("timeout", 180)
        return self.http.request(method, self.url + path, **kw)

    def launch(self, dataset_id: str, *, kind="guest", user_id=None, resources=(),
               client_ip="127.0.0.1", notebook_resource_id=None, dataset_url="") -> requests.Response:
        body = {
            "user": {"kind": kind, "id": user_id or f"{kind}-{uuid.uuid4().hex[:8]}", "name": "Tester"},
            "client_ip": client_ip,
            "dataset": {"id": dataset_id, "name": dataset_id, "title": f"Dataset {dataset_id}",
                        "url": dataset_url or f"http://127.0.0.1:5050/dataset/{dataset_id}"},
            "resources": list(resources),
        }
        if notebook_resource_id:
            body["notebook_resource_id"] = notebook_resource_id
        return self.call("POST", "/api/sessions", json=body)

    def sessions(self, **params) -> list[dict]:
        return self.call("GET", "/api/sessions", params=params).json()["sessions"]

    def end_all(self) -> None:
        """End every session; raises when the bridge could not end one (a
        test's cleanup fails where it happens, not in a later test)."""
        failed = []
        for s in self.sessions():
            resp = self.call("DELETE", f"/api/sessions/{s['id']}")
            if resp.status_code not in (204, 404):
                failed.append((s["id"], resp.status_code, resp.text[:200]))
        assert not failed, f"sessions the bridge could not end: {failed}"

    def put_settings(self, **values) -> dict:
        resp = self.call("PUT", "/api/settings", json=values)
        resp.raise_for_status()
        return resp.json()


class _Forms(HTMLParser):
    """Collects forms with their action and hidden inputs."""

    def __init__(self):
        super().__init__()
        self.forms: list[dict] = []
        self._current = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self._current = {"action": a.get("action", ""), "method": (a.get("method") or "get").lower(),
                             "fields": {}, "id": a.get("id", ""), "class": a.get("class", "")}
            self.forms.append(self._current)
        elif tag in ("input", "button") and self._current is not None and a.get("name"):
            self._current["fields"][a["name"]] = a.get("value", "")

    def handle_endtag(self, tag):
        if tag == "form":
            self._current = None


def forms(html: str) -> list[dict]:
    p = _Forms()
    p.feed(html)
    return p.forms


class Browser:
    """An HTTP client with cookies that submits CKAN's forms as a browser
    would (no JavaScript)."""

    def __init__(self):
        self.http = requests.Session()

    def get(self, url, **kw):
        kw.setdefault("timeout", 60)
        return self.http.get(url, **kw)

    def submit(self, page: requests.Response, action_pattern: str, extra: dict | None = None,
               **kw) -> requests.Response:
        for form in forms(page.text):
            if re.search(action_pattern, form["action"]) and form["method"] == "post":
                kw.setdefault("timeout", 180)
                return self.http.post(urljoin(page.url, form["action"]),
                                      data={**form["fields"], **(extra or {})}, **kw)
        raise AssertionError(f"no POST form matching {action_pattern!r} on {page.url}")

    def open_in_jupyter(self, ckan_url: str, dataset: str, **kw) -> requests.Response:
        page = self.get(f"{ckan_url}/dataset/{dataset}")
        page.raise_for_status()
        return self.submit(page, r"/jupyter$", **kw)


class Lab:
    """JupyterLab's REST and kernel APIs for one server, through the
    proxy, with the cookies of a browser that logged in with a ticket."""

    def __init__(self, http: requests.Session, server_url: str):
        self.http = http
        self.base = server_url.rstrip("/") + "/"

    @classmethod
    def from_url(cls, http: requests.Session, url: str) -> "Lab":
        m = re.match(r"(https?://[^/]+(?:/.*?)?/user/[^/]+/[^/]+)/", url)
        assert m, f"not a server URL: {url}"
        return cls(http, m.group(1))

    def _headers(self):
        return {"X-XSRFToken": xsrf_for(self.http, urlparse(self.base).path)}

    def status(self) -> int:
        return self.http.get(self.base + "api/status", timeout=30).status_code

    def listing(self, path: str = "") -> list[str]:
        r = self.http.get(self.base + "api/contents/" + path, timeout=30)
        r.raise_for_status()
        return [c["name"] for c in r.json()["content"]]

    def read(self, path: str) -> bytes:
        r = self.http.get(self.base + "api/contents/" + path, params={"format": "base64", "type": "file"},
                          timeout=60)
        r.raise_for_status()
        return base64.b64decode(r.json()["content"])

    def read_notebook(self, path: str) -> dict:
        r = self.http.get(self.base + "api/contents/" + path, timeout=60)
        r.raise_for_status()
        return r.json()["content"]

    def write(self, path: str, text: str) -> requests.Response:
        return self.http.put(self.base + "api/contents/" + path, headers=self._headers(),
                             json={"type": "file", "format": "text", "content": text}, timeout=60)

    def execute(self, code: str, timeout: float = 120) -> tuple[str, str | None]:
        """Run code in a fresh kernel; returns (stdout+stderr, error or None)."""
        r = self.http.post(self.base + "api/kernels", headers=self._headers(), json={}, timeout=60)
        r.raise_for_status()
        kernel_id = r.json()["id"]
        try:
            return self._run(kernel_id, code, timeout)
        finally:
            self.http.delete(self.base + f"api/kernels/{kernel_id}", headers=self._headers(), timeout=30)

    def _run(self, kernel_id: str, code: str, timeout: float):
        ws_url = self.base.replace("http", "ws", 1) + f"api/kernels/{kernel_id}/channels"
        cookie = "; ".join(f"{c.name}={c.value}" for c in self.http.cookies)
        ws = websocket.create_connection(ws_url, cookie=cookie, header=self._headers_list(),
                                         timeout=timeout)
        msg_id = uuid.uuid4().hex
        ws.send(json.dumps({
            "header": {"msg_id": msg_id, "username": "test", "session": uuid.uuid4().hex,
                       "msg_type": "execute_request", "version": "5.3",
                       "date": dt.datetime.now(dt.timezone.utc).isoformat()},
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
            "content": {"code": code, "silent": False, "store_history": False,
                        "user_expressions": {}, "allow_stdin": False, "stop_on_error": True},
        }))
        out, error = [], None
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                msg = json.loads(ws.recv())
                if msg.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                kind = msg["msg_type"]
                if kind == "stream":
                    out.append(msg["content"]["text"])
                elif kind == "error":
                    error = f"{msg['content']['ename']}: {msg['content']['evalue']}"
                elif kind == "status" and msg["content"]["execution_state"] == "idle":
                    break
        finally:
            ws.close()
        return "".join(out), error

    def _headers_list(self):
        return [f"{k}: {v}" for k, v in self._headers().items()]


def open_lab(session: dict) -> "Lab":
    """Follow a session's launch URL in a fresh browser and return its JupyterLab."""
    http = requests.Session()
    final = http.get(session["launch_url"], timeout=120)
    assert final.status_code == 200, (final.status_code, final.url)
    return Lab.from_url(http, final.url)


def wait_until(predicate, timeout: float = 60.0, step: float = 0.3) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return False


def holds_throughout(predicate, seconds: float, step: float = 0.1) -> bool:
    """Whether ``predicate`` is true at every sample over ``seconds``: a bound
    or a "nothing more happens" checked over the whole window, not at one
    moment after a sleep."""
    deadline = time.monotonic() + seconds
    while True:
        if not predicate():
            return False
        if time.monotonic() >= deadline:
            return True
        time.sleep(step)


def xsrf_for(http: requests.Session, path: str) -> str:
    """The _xsrf cookie a browser would send to ``path`` (the hub and each
    server set their own, on their own paths)."""
    best = None
    for c in http.cookies:
        if c.name == "_xsrf" and path.startswith(c.path) and (best is None or len(c.path) > len(best.path)):
            best = c
    return best.value if best else ""


def follow_launch(http: requests.Session, launch_url: str) -> requests.Response:
    """Open a launch URL as a browser: the ticket login, the OAuth dance,
    and JupyterLab."""
    return http.get(launch_url, timeout=120, allow_redirects=True)


def server_path(url: str) -> tuple[str, str]:
    m = re.search(r"/user/([^/]+)/([^/]+)/", urlparse(url).path)
    assert m, url
    return m.group(1), m.group(2)
