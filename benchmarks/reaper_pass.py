"""How long one reaper pass takes with many live sessions.

    .venv/bin/python benchmarks/reaper_pass.py --sessions 1000

The bridge's real ``Reaper`` (expiry, idle check, reconciliation, retried
teardowns) runs against a real store (SQLite in a temporary directory) that
holds ``--sessions`` ready session records, and a hub stub: a small tornado
app answering the four hub API calls a pass makes (the paginated user list,
stop a server, read a user, delete a user) as JupyterHub 5 does, pages of at
most ``--page`` users. A stub, because a real hub with a thousand running
servers does not fit on the machines this runs on; what is measured is the
bridge's own work and its round trips to the hub.

Phases, each timed:
- *steady*: nothing to end; the pass lists the hub's users (every page),
  checks idleness and reconciles records, directories and servers.
- *all idle*: every session has been idle past its limit; the pass ends all
  of them (stop, user deletion, scratch removal, record update).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

from tornado import web
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from jupyterhub_service.hub_api import HubAPI  # noqa: E402
from jupyterhub_service.reaper import Reaper  # noqa: E402
from jupyterhub_service.sessions import Sessions  # noqa: E402
from jupyterhub_service.settings import load  # noqa: E402
from jupyterhub_service.store import SessionRecord, Store, iso, utcnow  # noqa: E402


class HubStub:
    """Users ``guest-<i>`` with one ready server ``d-<i>`` each."""

    def __init__(self, count: int, page_max: int):
        self.page_max = page_max
        self.activity = iso(utcnow())
        self.users = {f"guest-{i}": {f"d-{i}"} for i in range(count)}
        self.calls = 0

    def model(self, name: str) -> dict:
        servers = {s: {"name": s, "ready": True, "pending": None,
                       "last_activity": self.activity} for s in self.users[name]}
        return {"kind": "user", "name": name, "servers": servers}

    def app(self) -> web.Application:
        stub = self

        class Base(web.RequestHandler):
            def prepare(self):
                stub.calls += 1

        class Users(Base):
            def get(self):
                state = self.get_argument("state", None)
                offset = int(self.get_argument("offset", "0"))
                limit = min(int(self.get_argument("limit", "50")), stub.page_max)
                names = [n for n in stub.users if state != "active" or stub.users[n]]
                if state == "inactive":
                    names = [n for n in stub.users if not stub.users[n]]
                page = names[offset:offset + limit]
                following = offset + limit
                self.write(json.dumps({
                    "items": [stub.model(n) for n in page],
                    "_pagination": {"offset": offset, "limit": limit, "total": len(names),
                                    "next": {"offset": following, "limit": limit, "url": ""}
                                    if following < len(names) else None},
                }))

        class User(Base):
            def get(self, name):
                if name not in stub.users:
                    raise web.HTTPError(404)
                self.write(stub.model(name))

            def delete(self, name):
                stub.users.pop(name, None)
                self.set_status(204)

        class Server(Base):
            def delete(self, name, server):
                stub.users.get(name, set()).discard(server)
                self.set_status(204)

        return web.Application([
            (r"/hub/api/users", Users),
            (r"/hub/api/users/([^/]+)", User),
            (r"/hub/api/users/([^/]+)/servers/([^/]+)", Server),
        ])


def fill_store(store: Store, count: int, idle_timeout: int) -> None:
    now = utcnow()
    with store.db() as db:
        for i in range(count):
            db.add(SessionRecord(
                id=f"s{i:05d}", user_id=f"g{i}", user_kind="guest", hub_user=f"guest-{i}",
                server_name=f"d-{i}", dataset_id=f"ds-{i}", status="ready",
                limits={"idle_timeout": idle_timeout}, started_at=now,
                expires_at=now + dt.timedelta(hours=1),
            ))


async def measure(count: int, page_max: int, rounds: int) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="reaper-bench-"))
    settings = load({"JUPYTERNOTEBOOK_STATE_DIR": str(tmp), "CKAN_JUPYTERHUB_API_TOKEN": "x",
                     "CKAN_STORAGE_NOTEBOOK": str(tmp / "storage")})
    stub = HubStub(count, page_max)
    sockets = bind_sockets(0, "127.0.0.1")
    HTTPServer(stub.app()).add_sockets(sockets)
    port = sockets[0].getsockname()[1]
    store = Store(f"sqlite:///{tmp / 'bridge.sqlite'}")
    fill_store(store, count, idle_timeout=600)
    sessions = Sessions(settings, store, HubAPI(f"http://127.0.0.1:{port}/hub/api", "x"))
    reaper = Reaper(sessions)

    steady = []
    for _ in range(rounds):
        stub.calls = 0
        start = time.perf_counter()
        await reaper.reap()
        steady.append(time.perf_counter() - start)
    steady_calls = stub.calls
    assert len(store.sessions(statuses=("ready",))) == count, "a steady pass ended sessions"

    # every session idle for an hour, past its 600 s limit
    stub.activity = iso(utcnow() - dt.timedelta(hours=1))
    stub.calls = 0
    start = time.perf_counter()
    await reaper.reap()
    all_idle = time.perf_counter() - start
    ended = len(store.sessions(statuses=("ended",)))
    return {
        "sessions": count, "hub_page_max": page_max,
        "steady_pass_s": {"median": statistics.median(steady), "max": max(steady),
                          "rounds": rounds},
        "steady_hub_calls": steady_calls,
        "all_idle_pass_s": all_idle, "all_idle_hub_calls": stub.calls, "ended": ended,
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--page", type=int, default=200, help="the hub's api_page_max_limit")
    parser.add_argument("--rounds", type=int, default=5, help="steady passes to time")
    args = parser.parse_args(argv)
    logging.getLogger("tornado.access").setLevel(logging.ERROR)  # the stub's 404s
    result = asyncio.run(measure(args.sessions, args.page, args.rounds))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
