"""Open in Jupyter, driven as a browser would, through the real CKAN,
bridge, hub and JupyterLab."""

from __future__ import annotations

import concurrent.futures
import io
import uuid

import requests

from dev.testing import Browser, Lab, wait_until



def csv_resource(portal, dataset):
    pkg = portal.sysadmin.action.package_show(id=dataset)
    return next(r for r in pkg["resources"] if r["format"].upper() == "CSV")


def original_bytes(portal, resource) -> bytes:
    resp = requests.get(resource["url"], timeout=30,
                        headers={"Authorization": portal.seed["api_token"]})
    resp.raise_for_status()
    return resp.content


def test_an_anonymous_visitor_lands_in_jupyterlab_with_the_data(portal, bridge):
    browser = Browser()
    final = browser.open_in_jupyter(portal.url, portal.dataset)
    assert final.status_code == 200, final.text[:500]
    assert "ticket" not in final.url
    assert "/lab/tree/start_here.ipynb" in final.url
    lab = Lab.from_url(browser.http, final.url)
    res = csv_resource(portal, portal.dataset)
    names = lab.listing("data")
    csv_name = next(n for n in names if n.lower().endswith(".csv"))
    assert lab.read(f"data/{csv_name}") == original_bytes(portal, res)
    assert "README.md" in names and "start_here.ipynb" in lab.listing()
    assert lab.write("my-notes.txt", "hello").status_code in (200, 201)

    again = browser.open_in_jupyter(portal.url, portal.dataset)
    assert again.status_code == 200
    assert Lab.from_url(browser.http, again.url).base == lab.base
    assert "my-notes.txt" in lab.listing()


def test_get_on_the_launch_url_goes_back_to_the_dataset(portal):
    resp = requests.get(f"{portal.url}/dataset/{portal.dataset}/jupyter", allow_redirects=False,
                        timeout=30)
    assert resp.status_code in (302, 303)
    assert resp.headers["Location"].endswith(f"/dataset/{portal.dataset}")


def test_after_the_timeout_the_session_is_gone_and_a_new_one_is_fresh(portal, bridge, hub_stack):
    bridge.put_settings(timeout=10)
    browser = Browser()
    first = browser.open_in_jupyter(portal.url, portal.dataset)
    lab = Lab.from_url(browser.http, first.url)
    assert lab.write("edits.txt", "will be discarded").status_code in (200, 201)
    sessions = bridge.sessions()
    assert len(sessions) == 1
    sess = sessions[0]
    scratch = hub_stack.storage / "sessions" / sess["id"]
    assert scratch.exists()
    assert wait_until(lambda: bridge.call("GET", f"/api/sessions/{sess['id']}").json()["status"] == "ended",
                      timeout=45)
    assert not scratch.exists()
    assert lab.status() != 200
    ended_page = browser.get(first.url)
    assert "has ended" in ended_page.text
    assert "/dataset/" in ended_page.text

    bridge.put_settings(timeout=1200)
    second = browser.open_in_jupyter(portal.url, portal.dataset)
    assert second.status_code == 200
    lab2 = Lab.from_url(browser.http, second.url)
    assert "edits.txt" not in lab2.listing()


def test_four_simultaneous_guests_with_two_slots_get_two_sessions_and_two_429s(portal, bridge, hub_stack):
    bridge.put_settings(max_guests=2)
    browsers = [Browser() for _ in range(4)]
    pages = [b.get(f"{portal.url}/dataset/{portal.dataset}") for b in browsers]

    def click(i):
        return browsers[i].submit(pages[i], r"/jupyter$")

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(click, range(4)))
    for r in results:  # issue 10 item 18: where each click landed, and how
        print(r.status_code, r.url, [(h.status_code, h.url) for h in r.history],
              r.text[:300] if r.status_code not in (200, 429) else "")
    codes = sorted(r.status_code for r in results)
    assert codes == [200, 200, 429, 429]
    refused = [r for r in results if r.status_code == 429]
    for page in refused:
        assert "All 2 guest sessions this portal offers are in use" in page.text
        assert "Logged-in users are not subject to the guest limit" in page.text
    bridge.end_all()
    assert bridge.sessions() == []
    leftovers = list((hub_stack.storage / "sessions").iterdir())
    assert leftovers == []


def test_anonymous_cannot_launch_a_private_dataset_but_a_member_can(portal, bridge):
    admin = portal.sysadmin
    name = f"private-{uuid.uuid4().hex[:8]}"
    admin.action.package_create(name=name, owner_org="demo-org", private=True, title="Private data")
    admin.action.resource_create(package_id=name, name="Secret numbers", format="CSV",
                                 upload=("secret.csv", io.BytesIO(b"x,y\n1,2\n")))
    user = admin.action.user_create(name=f"member-{uuid.uuid4().hex[:6]}",
                                    email=f"{uuid.uuid4().hex[:6]}@example.org",
                                    password="correct-horse-battery-9")
    admin.action.organization_member_create(id="demo-org", username=user["name"], role="member")
    token = admin.action.api_token_create(user=user["name"], name="e2e")["token"]

    anon = Browser()
    page = anon.get(f"{portal.url}/dataset/{name}")
    assert page.status_code in (403, 404)
    post = anon.http.post(f"{portal.url}/dataset/{name}/jupyter", timeout=60)
    assert post.status_code in (400, 403, 404)  # refused (no CSRF token can even be had)

    member = portal.api(token)
    sess = member.action.jupyternotebook_session_create(id=name)
    http = requests.Session()
    final = http.get(sess["launch_url"], timeout=120)
    assert final.status_code == 200
    lab = Lab.from_url(http, final.url)
    data = [n for n in lab.listing("data") if n.endswith(".csv")]
    assert len(data) == 1 and lab.read(f"data/{data[0]}") == b"x,y\n1,2\n"


def test_ckanapi_creates_lists_and_deletes_a_session(portal, bridge):
    api = portal.sysadmin
    sess = api.action.jupyternotebook_session_create(id=portal.dataset)
    assert sess["status"] == "ready" and sess["launch_url"].startswith(portal.stack.hub_url)
    listed = api.action.jupyternotebook_session_list()
    assert sess["id"] in [s["id"] for s in listed]
    cap = api.action.jupyternotebook_capacity_show()
    assert cap["sessions"]["active"] >= 1
    api.action.jupyternotebook_session_delete(id=sess["id"])
    assert sess["id"] not in [s["id"] for s in api.action.jupyternotebook_session_list()]


def test_with_the_hub_down_the_launch_gives_a_503_page(portal, bridge, hub_stack):
    browser = Browser()
    page = browser.get(f"{portal.url}/dataset/{portal.dataset}")
    hub_stack.stop_hub()
    try:
        resp = browser.submit(page, r"/jupyter$")
        assert resp.status_code == 503
        assert "Notebooks are unavailable right now" in resp.text
        assert "try again" in resp.text.lower()
    finally:
        hub_stack.start_hub(JUPYTERNOTEBOOK_REAPER_INTERVAL="1")
