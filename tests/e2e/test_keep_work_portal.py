"""Save to portal along the path JupyterLab's button takes: the bridge's
``portal_save.save_to_portal`` posts to the real CKAN server with the bridge
token, and CKAN saves as the session's own user."""

from __future__ import annotations

import asyncio
import types
import uuid

import pytest
import requests

from dev.testing import Browser, Lab, open_lab

TOKEN = "test-bridge-token"


def _store(hub_stack):
    from jupyterhub_service.store import Store

    return Store(f"sqlite:///{hub_stack.hub_state / 'bridge.sqlite'}")


def _save(rec, path, **kw):
    from jupyterhub_service.portal_save import save_to_portal

    settings = types.SimpleNamespace(api_token=TOKEN)
    return asyncio.run(save_to_portal(settings, rec, path, **kw))


@pytest.fixture
def editor(portal):
    """A user who edits a public dataset of an organization, with a token."""
    admin = portal.sysadmin
    name = f"editor-{uuid.uuid4().hex[:8]}"
    user = admin.action.user_create(name=name, email=f"{name}@example.org",
                                    password=uuid.uuid4().hex)
    org = admin.action.organization_create(
        name=f"org-{uuid.uuid4().hex[:8]}",
        users=[{"name": name, "capacity": "editor"}])
    dataset = admin.action.package_create(name=f"keep-{uuid.uuid4().hex[:8]}",
                                          owner_org=org["id"], private=False)
    token = admin.action.api_token_create(user=name, name="e2e")["token"]
    return user, token, dataset


def test_save_from_jupyterlab_creates_the_resource_as_the_user(portal, bridge, hub_stack, editor):
    user, token, dataset = editor
    session = portal.api(token).action.jupyternotebook_session_create(id=dataset["name"])
    rec = _store(hub_stack).get(session["id"])
    assert rec.portal_url == portal.url  # CKAN told the bridge where it is
    data = b"year,value\n" + b"".join(b"%d,%d\n" % (y, y * 7) for y in range(1900, 2000))
    out, err = open_lab(session).execute(
        f"open('trend.csv', 'wb').write({data!r}); print('ok')")
    assert err is None and "ok" in out

    resource = _save(rec, "trend.csv", name="Trend")

    assert resource["name"] == "Trend"
    assert resource["jupyternotebook_origin"] == "session"
    stored = requests.get(resource["url"], headers={"Authorization": token}, timeout=30)
    assert stored.status_code == 200 and stored.content == data
    page = requests.get(f"{portal.url}/dataset/{dataset['name']}", timeout=30)
    assert "Trend" in page.text
    activity = portal.sysadmin.action.package_activity_list(id=dataset["id"])[0]
    assert activity["user_id"] == user["id"]


def test_a_guest_session_cannot_save(portal, bridge, hub_stack):
    browser = Browser()
    final = browser.open_in_jupyter(portal.url, portal.dataset)
    assert final.status_code == 200
    Lab.from_url(browser.http, final.url).write("mine.txt", "guest work")
    guest = next(s for s in bridge.sessions() if s["user_kind"] == "guest")
    from jupyterhub_service.errors import BridgeError

    with pytest.raises(BridgeError) as refused:
        _save(_store(hub_stack).get(guest["id"]), "mine.txt")
    assert refused.value.status == 403
    assert refused.value.code == "login_required"
    assert "Log in with an account that may edit this dataset" in refused.value.message


def test_a_file_over_the_portals_limit_is_refused_with_its_size(portal, bridge, hub_stack, editor):
    _, token, dataset = editor
    session = portal.api(token).action.jupyternotebook_session_create(id=dataset["name"])
    # the dev stack's ckan.ini: ckan.max_resource_size = 100 (MB); a sparse file
    out, err = open_lab(session).execute(
        "f = open('huge.bin', 'wb'); f.truncate(100 * 1024 * 1024 + 1); f.close(); print('ok')")
    assert err is None and "ok" in out
    from jupyterhub_service.errors import BridgeError

    with pytest.raises(BridgeError) as refused:
        _save(_store(hub_stack).get(session["id"]), "huge.bin")
    assert refused.value.status == 413
    assert refused.value.code == "too_large"
    assert refused.value.message == ("The file is too large to save: this portal accepts "
                                     "files of up to 100 MB.")
    assert portal.sysadmin.action.package_show(id=dataset["id"])["resources"] == []
