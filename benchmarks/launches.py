"""One launch, timed: through CKAN's form as a browser does it, or as a bare
JupyterHub REST spawn. Each returns a ``Launch`` with its phases."""

from __future__ import annotations

import math
import statistics
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from urllib.parse import parse_qs, urlparse

import requests

from stacks import BareHub
from dev.testing import Bridge, Browser, Lab, server_path

STATUS_WAIT = 60


@dataclass
class Launch:
    kind: str
    ok: bool = False
    error: str = ""
    hub_user: str = ""
    server: str = ""
    started: float = 0.0  # epoch seconds, to line up with the hub log
    # seconds from the start
    ready: float | None = None  # CKAN's 303 (ours) / the hub says ready (bare)
    lab: float | None = None  # the ticket login and JupyterLab's page (ours)
    total: float | None = None  # /api/status answered 200 through the proxy
    phases: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def _wait_status(get, deadline: float) -> int:
    code = 0
    while time.monotonic() < deadline:
        try:
            code = get().status_code
        except requests.RequestException:
            code = 0
        if code == 200:
            return code
        time.sleep(0.05)
    return code


class CKANLauncher:
    """Open in Jupyter, as ``dev/testing.Browser`` submits the form (no JS)."""

    def __init__(self, ckan_url: str):
        self.ckan_url = ckan_url

    def page(self, dataset: str) -> tuple[Browser, requests.Response]:
        """The dataset page, loaded before the click (not timed)."""
        b = Browser()
        page = b.get(f"{self.ckan_url}/dataset/{dataset}")
        page.raise_for_status()
        return b, page

    def click(self, browser: Browser, page: requests.Response, kind: str = "ckan") -> Launch:
        out = Launch(kind=kind, started=time.time())
        t0 = time.monotonic()
        try:
            r = browser.submit(page, r"/jupyter$", allow_redirects=False, timeout=300)
            if r.status_code != 303:
                out.error = f"launch POST answered {r.status_code}"
                return out
            out.ready = time.monotonic() - t0
            launch_url = r.headers["Location"]
            next_path = parse_qs(urlparse(launch_url).query).get("next", [launch_url])[0]
            out.hub_user, out.server = server_path("http://hub" + next_path)
            page = browser.http.get(launch_url, allow_redirects=True, timeout=120)
            out.lab = time.monotonic() - t0
            if page.status_code != 200:
                out.error = f"JupyterLab page answered {page.status_code} at {page.url}"
                return out
            lab = Lab.from_url(browser.http, page.url)
            code = _wait_status(lambda: browser.http.get(lab.base + "api/status", timeout=30),
                                time.monotonic() + STATUS_WAIT)
            if code != 200:
                out.error = f"/api/status answered {code}"
                return out
            out.total = time.monotonic() - t0
            out.ok = True
        except Exception as e:  # a failed launch is a result, not a crash
            out.error = f"{type(e).__name__}: {e}"
        return out

    def launch(self, dataset: str, kind: str = "ckan") -> Launch:
        b, page = self.page(dataset)
        return self.click(b, page, kind)


def bare_launch(hub: BareHub, user: str, options: dict, poll: float = 0.05) -> Launch:
    """POST the named server with an admin token, poll until ready, then
    /api/status through the proxy with the same token."""
    out = Launch(kind="bare", hub_user=user, server="s", started=time.time())
    t0 = time.monotonic()
    try:
        r = hub.api("POST", f"/users/{user}/servers/s", json=options)
        # JupyterHub 5.5.4 answers 500 (InvalidStateError in
        # finish_user_spawn) to a spawn that outlasts slow_spawn_timeout while
        # the server is still pending, as containers do here: poll on, and
        # fail below if the server really stopped
        if r.status_code not in (201, 202, 500):
            out.error = f"spawn answered {r.status_code}: {r.text[:200]}"
            return out
        deadline = time.monotonic() + 180
        while r.status_code != 201 and time.monotonic() < deadline:
            server = (hub.api("GET", f"/users/{user}").json().get("servers") or {}).get("s") or {}
            if server.get("ready"):
                break
            if not server.get("pending"):
                out.error = "the server stopped while starting"
                return out
            time.sleep(poll)
        out.ready = time.monotonic() - t0
        url = f"{hub.url}/user/{user}/s/api/status"
        code = _wait_status(lambda: hub.http.get(url, timeout=30), time.monotonic() + STATUS_WAIT)
        if code != 200:
            out.error = f"/api/status answered {code}"
            return out
        out.total = time.monotonic() - t0
        out.ok = True
    except Exception as e:
        out.error = f"{type(e).__name__}: {e}"
    return out


def new_bare_user(hub: BareHub) -> tuple[str, dict]:
    user = "bare-" + uuid.uuid4().hex[:8]
    r = hub.api("POST", f"/users/{user}")
    r.raise_for_status()
    return user, hub.prepare_home(user)


def simultaneously(n: int, prepare, fire) -> tuple[list, float]:
    """Run ``prepare(i)`` for each of n workers, then release them at once to
    run ``fire(prepared)``; returns the results and the time until the last
    one finished."""
    prepared = [prepare(i) for i in range(n)]
    barrier = threading.Barrier(n + 1)
    results: list = [None] * n

    def worker(i):
        barrier.wait()
        results[i] = fire(prepared[i])

    with ThreadPoolExecutor(max_workers=n) as pool:
        futures = [pool.submit(worker, i) for i in range(n)]
        barrier.wait()
        t0 = time.monotonic()
        for f in futures:
            f.result()
        elapsed = time.monotonic() - t0
    return results, elapsed


def wait_pool(bridge: Bridge, ready: int, timeout: float) -> dict:
    """Wait until the bridge reports at least ``ready`` pool servers."""
    deadline = time.monotonic() + timeout
    cap = {}
    while time.monotonic() < deadline:
        cap = bridge.call("GET", "/api/capacity").json()
        if (cap.get("pool") or {}).get("ready", 0) >= ready:
            return cap
        time.sleep(0.25)
    return cap


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100); None without values."""
    vs = sorted(v for v in values if v is not None)
    if not vs:
        return None
    k = max(0, min(len(vs) - 1, math.ceil(p / 100 * len(vs)) - 1))
    return vs[k]


def summary(values: list[float]) -> dict:
    vs = [v for v in values if v is not None]
    return {
        "n": len(vs),
        "p50": statistics.median(vs) if vs else None,
        "p95": percentile(vs, 95),
        "min": min(vs) if vs else None,
        "max": max(vs) if vs else None,
    }
