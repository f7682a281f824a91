"""The warm pool through the real hub: claim, refill, the free-slot bound,
replacement on a limit change, and no file of one dataset in another's
session. Timings are never asserted."""

from __future__ import annotations

import pytest
import requests

from dev.testing import Lab, holds_throughout, wait_until

from .fileserver import FileServer, Route



def pool_ready(bridge) -> int:
    return bridge.call("GET", "/api/capacity").json()["pool"]["ready"]


@pytest.fixture
def files():
    srv = FileServer().start()
    srv.routes["/public.csv"] = Route(body=b"a,b\n1,2\n")
    srv.routes["/private.csv"] = Route(body=b"secret,1\n")
    yield srv
    srv.stop()


@pytest.fixture
def pool(bridge):
    yield bridge
    bridge.put_settings(pool_size=0)
    assert wait_until(lambda: pool_ready(bridge) == 0)


def test_a_guest_launch_claims_a_ready_server_and_the_pool_refills(pool, files, hub_stack):
    pool.put_settings(pool_size=2)
    assert wait_until(lambda: pool_ready(pool) == 2)
    sess = pool.launch("ds-pool", user_id="guest-p1", resources=[
        {"id": "r-pub", "name": "Public", "format": "CSV", "hash": "p1",
         "fetch_url": files.url("/public.csv"), "source": "ckan"}]).json()
    assert sess["from_pool"] is True
    assert sess["server_name"].startswith("p-")
    http = requests.Session()
    final = http.get(sess["launch_url"], timeout=60)
    assert final.status_code == 200 and "ticket" not in final.url
    lab = Lab.from_url(http, final.url)
    assert lab.read("data/Public.csv") == b"a,b\n1,2\n"
    assert "start_here.ipynb" in lab.listing()
    assert wait_until(lambda: pool_ready(pool) == 2)


def test_the_pool_never_exceeds_the_free_guest_slots(pool):
    pool.put_settings(max_guests=2, pool_size=5)
    assert wait_until(lambda: pool_ready(pool) == 2)
    assert holds_throughout(lambda: pool_ready(pool) == 2, seconds=3)
    pool.launch("ds-free", user_id="guest-free")
    assert wait_until(lambda: pool_ready(pool) == 1)
    cap = pool.call("GET", "/api/capacity").json()
    assert cap["pool"]["ready"] <= cap["guests"]["max"] - cap["guests"]["active"]


def test_a_limit_change_replaces_pool_servers(pool, hub_stack):
    pool.put_settings(pool_size=1)
    assert wait_until(lambda: pool_ready(pool) == 1)
    import sqlite3

    def pool_users():
        db = sqlite3.connect(hub_stack.hub_state / "bridge.sqlite")
        try:
            return {r[0]: r[1] for r in db.execute("select hub_user, limits from pool where status='ready'")}
        finally:
            db.close()

    old = pool_users()
    pool.put_settings(memory_limit="2G")
    assert wait_until(lambda: pool_users() and set(pool_users()) != set(old))
    assert all('"2G"' in limits for limits in pool_users().values())
    sess = pool.launch("ds-limits", user_id="guest-lim").json()
    assert sess["limits"]["memory_limit"] == "2G"


def test_pooled_sessions_never_show_another_datasets_files(pool, files):
    pool.put_settings(pool_size=2)
    assert wait_until(lambda: pool_ready(pool) == 2)
    private = pool.launch("ds-private", user_id="guest-a", resources=[
        {"id": "r-priv", "name": "Private", "format": "CSV", "hash": "s1",
         "fetch_url": files.url("/private.csv"), "source": "ckan"}]).json()
    public = pool.launch("ds-public", user_id="guest-b", resources=[
        {"id": "r-pub", "name": "Public", "format": "CSV", "hash": "p1",
         "fetch_url": files.url("/public.csv"), "source": "ckan"}]).json()
    assert private["from_pool"] and public["from_pool"]
    http = requests.Session()
    lab = Lab.from_url(http, http.get(public["launch_url"], timeout=60).url)
    assert sorted(lab.listing("data")) == ["Public.csv", "README.md"]
    # a fresh pool server has nothing in ~/data
    assert wait_until(lambda: pool_ready(pool) >= 1)
    third = pool.launch("ds-empty", user_id="guest-c").json()
    assert third["from_pool"]
    # another visitor: a browser logged in with a live session is asked
    # before it switches to someone else's session
    http3 = requests.Session()
    lab3 = Lab.from_url(http3, http3.get(third["launch_url"], timeout=60).url)
    assert lab3.listing("data") == ["README.md"]
