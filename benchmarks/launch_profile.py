"""Where a cold launch's time goes, from the timestamps the hub, the bridge
and the single-user server already log (millisecond resolution, same clock
as the benchmark), the server process's start time, and the client's own
clock.

Run on sequential launches only: with launches overlapping, log lines could
not be told apart.
"""

from __future__ import annotations

import datetime as dt
import re
import statistics
from pathlib import Path

_HUB = re.compile(r"^\[(\w) (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) (\S+)[^\]]*\] (.*)$")
_BRIDGE = re.compile(r"^\[bridge (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \w+\] (.*)$")
_DURATION = re.compile(r"([\d.]+)ms\s*$")

# the phases of a launch through CKAN, in order, with what bounds them
CKAN_PHASES = [
    ("ckan_before_bridge", "CKAN: form POST until the bridge has the request"),
    ("bridge_before_hub", "bridge: caps, cache, scratch, start_here, until the hub call"),
    ("bridge_user_create", "bridge → hub: create the hub user, request the server"),
    ("hub_spawn", "hub: server request until the process exists"),
    ("server_startup", "single-user server start-up (Python, imports, JupyterLab)"),
    ("hub_ready", "hub: server listening until the hub marks it ready"),
    ("bridge_answer", "bridge notices ready, answers CKAN"),
    ("ckan_answer", "CKAN answers the browser (303)"),
    ("login", "ticket login, OAuth with the server, JupyterLab page"),
    ("status", "/api/status through the proxy"),
]
BARE_PHASES = [
    ("hub_spawn", "hub: server request until the process exists"),
    ("server_startup", "single-user server start-up (Python, imports, JupyterLab)"),
    ("hub_ready", "hub: server listening until the hub marks it ready"),
    ("client_ready", "the client sees ready"),
    ("status", "/api/status through the proxy"),
]


def _ts(text: str) -> float:
    return dt.datetime.strptime(text.replace(",", "."), "%Y-%m-%d %H:%M:%S.%f").timestamp()


def read_log(path: Path, since: float) -> list[tuple[float, str, str]]:
    """(epoch, source, message) for the lines at or after ``since``;
    source is the logger name, or ``bridge``."""
    out = []
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return out
    for line in lines:
        m = _HUB.match(line)
        if m:
            t = _ts(m.group(2))
            if t >= since - 1:
                out.append((t, m.group(3), m.group(4)))
            continue
        m = _BRIDGE.match(line)
        if m:
            t = _ts(m.group(1))
            if t >= since - 1:
                out.append((t, "bridge", m.group(2)))
    return out


def _request(lines, source_pred, pattern: str, after: float):
    """(start, end) of the first logged request matching pattern that ended
    after ``after``; the start is the end minus the logged duration."""
    for t, src, msg in lines:
        if t < after or not source_pred(src) or pattern not in msg:
            continue
        d = _DURATION.search(msg)
        return (t - float(d.group(1)) / 1000 if d else t), t
    return None


def _first(lines, pred, after: float):
    for t, src, msg in lines:
        if t >= after and pred(src, msg):
            return t
    return None


def marks(lines, user: str, server: str, started: float, proc_start: float | None) -> dict:
    """The moments of one launch in the logs (epoch seconds; missing ones
    are left out)."""
    m = {"start": started}
    bridge = _request(lines, lambda s: s == "bridge", "POST /api/sessions", started)
    if bridge:
        m["bridge_in"], m["bridge_out"] = bridge
    create = _request(lines, lambda s: s == "JupyterHub", f"POST /hub/api/users/{user} ", started)
    if create:
        m["user_create"] = create[0]
    spawn = _request(lines, lambda s: s == "JupyterHub",
                     f"POST /hub/api/users/{user}/servers/{server} ", started)
    if spawn:
        m["spawn_request"], m["spawn_answer"] = spawn
    if proc_start:
        m["process"] = proc_start
    running = _first(lines, lambda s, msg: s == "ServerApp" and f"/user/{user}/{server}/" in msg
                     and msg.startswith("http"), started)
    if running:
        m["listening"] = running
    ready = _first(lines, lambda s, msg: f"User {user}:{server} took" in msg, started)
    if ready:
        m["hub_ready"] = ready
    return m


def ckan_phases(m: dict, ready: float, lab: float, total: float) -> dict:
    """Durations (s) of the CKAN launch phases from its marks and the
    client's times (seconds after the start)."""
    t = dict(m)
    t["client_303"], t["client_lab"], t["client_status"] = (
        m["start"] + ready, m["start"] + lab, m["start"] + total)
    return _spans(t, [
        ("ckan_before_bridge", "start", "bridge_in"),
        ("bridge_before_hub", "bridge_in", "user_create"),
        ("bridge_user_create", "user_create", "spawn_request"),
        ("hub_spawn", "spawn_request", "process"),
        ("server_startup", "process", "listening"),
        ("hub_ready", "listening", "hub_ready"),
        ("bridge_answer", "hub_ready", "bridge_out"),
        ("ckan_answer", "bridge_out", "client_303"),
        ("login", "client_303", "client_lab"),
        ("status", "client_lab", "client_status"),
    ])


def bare_phases(m: dict, ready: float, total: float) -> dict:
    t = dict(m)
    t["client_ready"], t["client_status"] = m["start"] + ready, m["start"] + total
    return _spans(t, [
        ("hub_spawn", "spawn_request", "process"),
        ("server_startup", "process", "listening"),
        ("hub_ready", "listening", "hub_ready"),
        ("client_ready", "hub_ready", "client_ready"),
        ("status", "client_ready", "client_status"),
    ])


def _spans(t: dict, spans) -> dict:
    out = {}
    for name, a, b in spans:
        if a in t and b in t:
            out[name] = round(t[b] - t[a], 4)
    return out


def median_phases(rows: list[dict]) -> dict:
    keys = {k for r in rows for k in r}
    return {k: round(statistics.median(r[k] for r in rows if k in r), 4) for k in keys}
