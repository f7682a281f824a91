"""Save to portal and Extend (issue 13) through CKAN's real actions, pages
and the bridge-token endpoint, against the real bridge, hub and JupyterLab
of the test stack (test.ini points CKAN at its bridge)."""
from __future__ import annotations

import base64
import datetime as dt
import json
from pathlib import Path

import pytest

import ckan.plugins.toolkit as tk
from ckan.tests import factories

from dev.testing import open_lab

BRIDGE_TOKEN = "test-bridge-token"
DEMO_NOTEBOOK = Path(__file__).resolve().parents[1] / "data" / "demo.ipynb"


def _token(user):
    return factories.APIToken(user=user["id"])["token"]


def _call(app, action, token=None, status=200, **data):
    headers = {"Authorization": token} if token else {}
    response = app.post(f"/api/3/action/{action}", json=data, headers=headers)
    assert response.status_code == status, response.body
    return response.json


def _write(lab, path: str, data: bytes) -> None:
    """Write bytes into the session's home from its own kernel."""
    code = (f"import base64, os\nos.makedirs(os.path.dirname({path!r}) or '.', exist_ok=True)\n"
            f"open({path!r}, 'wb').write(base64.b64decode({base64.b64encode(data).decode()!r}))\n"
            "print('written')\n")
    out, err = lab.execute(code)
    assert err is None and "written" in out, (out, err)


def _time(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


@pytest.fixture
def editor_dataset():
    """A public dataset of an organization, an editor of it and its token."""
    editor = factories.User()
    org = factories.Organization(users=[{"name": editor["name"], "capacity": "editor"}])
    dataset = factories.Dataset(owner_org=org["id"], private=False)
    return editor, _token(editor), dataset


def _session(app, token, dataset, **extra):
    return _call(app, "jupyternotebook_session_create", token,
                 id=dataset["name"], **extra)["result"]


def _download(app, resource) -> bytes:
    path = resource["url"].split("://", 1)[-1]
    path = path[path.index("/"):]
    response = app.get(path)
    assert response.status_code == 200, resource["url"]
    return response.get_data()


@pytest.mark.usefixtures("clean_db", "with_plugins")
class TestSave:
    def test_save_creates_a_resource_with_the_files_bytes_in_the_activity_stream(
            self, app, bridge, editor_dataset):
        editor, token, dataset = editor_dataset
        session = _session(app, token, dataset)
        data = b"city,population\n" + bytes(range(256)) * 30
        _write(open_lab(session), "results/cities.csv", data)

        resource = _call(app, "jupyternotebook_session_save", token,
                         id=session["id"], path="results/cities.csv",
                         name="Cities (from Jupyter)")["result"]

        assert resource["package_id"] == dataset["id"]
        assert resource["name"] == "Cities (from Jupyter)"
        assert resource["url_type"] == "upload"
        assert resource["jupyternotebook_origin"] == "session"
        assert _download(app, resource) == data
        page = app.get(tk.url_for("dataset.read", id=dataset["name"]))
        assert "Cities (from Jupyter)" in page.body
        activity = _call(app, "package_activity_list", token,
                         id=dataset["id"])["result"][0]
        assert activity["user_id"] == editor["id"]
        assert activity["activity_type"] == "changed package"

    def test_a_saved_notebook_gets_the_preview_view(self, app, bridge, editor_dataset):
        _, token, dataset = editor_dataset
        session = _session(app, token, dataset)
        _write(open_lab(session), "analysis.ipynb", DEMO_NOTEBOOK.read_bytes())
        resource = _call(app, "jupyternotebook_session_save", token,
                         id=session["id"], path="analysis.ipynb")["result"]
        assert resource["name"] == "analysis.ipynb"
        views = _call(app, "resource_view_list", token, id=resource["id"])["result"]
        assert [v["view_type"] for v in views] == ["jupyter_notebook"]

    def test_the_opened_notebook_gets_a_new_upload(self, app, bridge, editor_dataset,
                                                   create_with_upload):
        editor, token, dataset = editor_dataset
        notebook = create_with_upload(DEMO_NOTEBOOK.read_bytes(), "demo.ipynb",
                                      package_id=dataset["id"], context={"user": editor["name"]})
        session = _session(app, token, dataset, resource_id=notebook["id"])
        assert session["notebook_resource_id"] == notebook["id"]
        edited = json.loads(DEMO_NOTEBOOK.read_text())
        edited["cells"].append({"cell_type": "markdown", "metadata": {}, "source": "Edited."})
        new_bytes = json.dumps(edited).encode()
        _write(open_lab(session), "demo-edited.ipynb", new_bytes)

        saved = _call(app, "jupyternotebook_session_save", token, id=session["id"],
                      path="demo-edited.ipynb", replace_resource_id=notebook["id"])["result"]
        assert saved["id"] == notebook["id"]
        assert _download(app, saved) == new_bytes
        pkg = _call(app, "package_show", token, id=dataset["id"])["result"]
        assert [r["id"] for r in pkg["resources"]] == [notebook["id"]]

        other = _call(app, "jupyternotebook_session_save", token, status=403,
                      id=session["id"], path="demo-edited.ipynb",
                      replace_resource_id="another-resource")
        assert "Only the notebook this session was opened from" in json.dumps(other)

    def test_a_user_without_edit_rights_cannot_save(self, app, bridge, editor_dataset):
        _, _, dataset = editor_dataset
        reader = factories.User()
        token = _token(reader)
        session = _session(app, token, dataset)
        _write(open_lab(session), "mine.csv", b"a,b\n1,2\n")
        refused = _call(app, "jupyternotebook_session_save", token, status=403,
                        id=session["id"], path="mine.csv")
        assert "You may not edit this dataset" in refused["error"]["message"]
        pkg = _call(app, "package_show", token, id=dataset["id"])["result"]
        assert pkg["resources"] == []

    def test_nobody_saves_from_another_users_session(self, app, bridge, editor_dataset):
        editor, token, dataset = editor_dataset
        session = _session(app, token, dataset)
        # another editor of the same organization
        other = factories.User()
        _call(app, "organization_member_create", _token(factories.Sysadmin()),
              id=dataset["owner_org"], username=other["name"], role="editor")
        refused = _call(app, "jupyternotebook_session_save", _token(other), status=403,
                        id=session["id"], path="start_here.ipynb")
        assert "your own sessions" in refused["error"]["message"]

    def test_a_guest_cannot_save(self, app, bridge, editor_dataset):
        _, _, dataset = editor_dataset
        guest = bridge.launch(dataset["id"]).json()
        refused = _call(app, "jupyternotebook_session_save", None, status=403,
                        id=guest["id"], path="start_here.ipynb")
        assert "Guests cannot save to the portal" in refused["error"]["message"]
        # nor through the bridge's endpoint (JupyterLab's button)
        answer = app.post("/jupyter/api/session-save",
                          json={"session_id": guest["id"], "path": "start_here.ipynb"},
                          headers={"Authorization": f"Bearer {BRIDGE_TOKEN}"})
        assert answer.status_code == 403
        assert answer.json["error"] == "login_required"
        assert "Log in with an account that may edit this dataset" in answer.json["message"]

    @pytest.mark.ckan_config("ckan.max_resource_size", 1)
    def test_a_file_over_max_resource_size_is_refused_clearly(self, app, bridge,
                                                              editor_dataset):
        _, token, dataset = editor_dataset
        session = _session(app, token, dataset)
        _write(open_lab(session), "big.bin", b"x" * (1024 * 1024 + 1))
        refused = _call(app, "jupyternotebook_session_save", token, status=409,
                        id=session["id"], path="big.bin")
        assert refused["error"]["path"] == [
            "The file is too large to save: this portal accepts files of up to 1 MB."]
        answer = app.post("/jupyter/api/session-save",
                          json={"session_id": session["id"], "path": "big.bin"},
                          headers={"Authorization": f"Bearer {BRIDGE_TOKEN}"})
        assert answer.status_code == 413
        assert answer.json == {"error": "too_large", "message":
                               "The file is too large to save: this portal accepts "
                               "files of up to 1 MB."}

    def test_paths_outside_the_home_are_refused(self, app, bridge, editor_dataset):
        _, token, dataset = editor_dataset
        session = _session(app, token, dataset)
        for path in ("../../etc/passwd", "/etc/passwd", "data/README.md"):
            refused = _call(app, "jupyternotebook_session_save", token, status=409,
                            id=session["id"], path=path)
            assert "path" in refused["error"], (path, refused)
        missing = _call(app, "jupyternotebook_session_save", token, status=404,
                        id=session["id"], path="nothing-here.csv")
        assert "no such file" in missing["error"]["message"]


@pytest.mark.usefixtures("clean_db", "with_plugins")
class TestBridgeEndpoint:
    def test_the_bridge_saves_as_the_sessions_user(self, app, bridge, editor_dataset):
        editor, token, dataset = editor_dataset
        session = _session(app, token, dataset)
        _write(open_lab(session), "notes.txt", b"kept\n")
        answer = app.post("/jupyter/api/session-save",
                          json={"session_id": session["id"], "path": "notes.txt",
                                "name": "My notes"},
                          headers={"Authorization": f"Bearer {BRIDGE_TOKEN}"})
        assert answer.status_code == 200, answer.body
        resource = answer.json["resource"]
        assert resource["name"] == "My notes"
        assert answer.json["url"].endswith(f"/dataset/{dataset['id']}/resource/{resource['id']}")
        assert _download(app, resource) == b"kept\n"
        activity = _call(app, "package_activity_list", token, id=dataset["id"])["result"][0]
        assert activity["user_id"] == editor["id"]

    def test_without_the_bridge_token_nothing_is_saved(self, app, bridge, editor_dataset):
        _, token, dataset = editor_dataset
        session = _session(app, token, dataset)
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": token}):
            answer = app.post("/jupyter/api/session-save",
                              json={"session_id": session["id"], "path": "start_here.ipynb"},
                              headers=headers)
            assert answer.status_code == 401, headers
            assert answer.json["error"] == "unauthorized"
        pkg = _call(app, "package_show", token, id=dataset["id"])["result"]
        assert pkg["resources"] == []

    def test_replace_without_an_opened_notebook_is_refused(self, app, bridge, editor_dataset):
        _, token, dataset = editor_dataset
        session = _session(app, token, dataset)
        answer = app.post("/jupyter/api/session-save",
                          json={"session_id": session["id"], "path": "start_here.ipynb",
                                "replace": True},
                          headers={"Authorization": f"Bearer {BRIDGE_TOKEN}"})
        assert answer.status_code == 409
        assert answer.json["error"] == "no_notebook"


@pytest.mark.usefixtures("clean_db", "with_plugins")
class TestExtend:
    def test_a_user_extends_their_session(self, app, bridge, editor_dataset):
        bridge.put_settings(timeout=600, max_extended_age=3600)
        _, token, dataset = editor_dataset
        session = _session(app, token, dataset)
        extended = _call(app, "jupyternotebook_session_extend", token,
                         id=session["id"])["result"]
        assert _time(extended["expires_at"]) == _time(session["expires_at"]) + dt.timedelta(
            seconds=600)

    def test_nobody_extends_another_users_session(self, app, bridge, editor_dataset):
        _, token, dataset = editor_dataset
        session = _session(app, token, dataset)
        refused = _call(app, "jupyternotebook_session_extend", _token(factories.User()),
                        status=403, id=session["id"])
        assert "your own sessions" in refused["error"]["message"]

    def test_the_limit_is_a_clear_refusal(self, app, bridge, editor_dataset):
        bridge.put_settings(max_extended_age=0)
        _, token, dataset = editor_dataset
        session = _session(app, token, dataset)
        refused = _call(app, "jupyternotebook_session_extend", token, status=409,
                        id=session["id"])
        assert refused["error"]["code"] == ["extend_limit"]
        assert refused["error"]["message"] == ["Sessions cannot be extended on this portal."]

    def test_the_dashboard_shows_time_left_and_extends(self, app, bridge, editor_dataset):
        bridge.put_settings(timeout=600, max_extended_age=3600)
        _, token, dataset = editor_dataset
        session = _session(app, token, dataset)
        headers = {"Authorization": token}
        page = app.get("/dashboard/jupyter", headers=headers)
        assert page.status_code == 200
        assert 'class="jupyternotebook-time-left"' in page.body
        action = tk.url_for("jupyternotebook_keep.extend", session_id=session["id"])
        assert f'action="{action}"' in page.body
        after = app.post(action, headers=headers, follow_redirects=False)
        assert after.status_code == 302
        shown = _call(app, "jupyternotebook_session_list", token)["result"][0]
        assert _time(shown["expires_at"]) == _time(session["expires_at"]) + dt.timedelta(
            seconds=600)
        page = app.get("/dashboard/jupyter", headers=headers)
        assert "The session now ends at" in page.body
