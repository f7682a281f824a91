"""The report page of a notebook resource: only editors reach it, it offers
the notebook's declared parameters, bad input comes back as the page with
the message, Run now and Cancel are forms with CSRF."""
from __future__ import annotations

import re

import pytest

import ckan.plugins.toolkit as tk
from ckan.tests import factories, helpers

pytestmark = pytest.mark.usefixtures("clean_db", "with_plugins")


def _auth(user):
    return {"Authorization": factories.APIToken(user=user["id"])["token"]}


def _url(dataset, notebook, endpoint="show", **kw):
    return tk.url_for(f"jupyternotebook_reports.{endpoint}", id=dataset["name"],
                      resource_id=notebook["id"], **kw)


def test_an_editor_sees_the_set_up_form_with_the_notebooks_parameters(
        app, editor_and_notebook):
    editor, dataset, notebook = editor_and_notebook
    page = app.get(_url(dataset, notebook), headers=_auth(editor))
    assert page.status_code == 200
    assert "Set up as report" in page.body
    for name in ("year", "region", "limit"):
        assert f'name="param-{name}"' in page.body
    assert "default: 2020" in page.body
    assert 'name="_csrf_token"' in page.body


def test_the_notebook_view_links_editors_to_the_report_page(app, editor_and_notebook):
    editor, dataset, notebook = editor_and_notebook
    helpers.call_action("resource_view_create", {"user": editor["name"], "ignore_auth": False},
                        resource_id=notebook["id"], view_type="jupyter_notebook",
                        title="Notebook")
    url = tk.url_for("resource.read", id=dataset["name"], resource_id=notebook["id"])
    assert _url(dataset, notebook) in app.get(url, headers=_auth(editor)).body
    stranger = factories.User()
    assert _url(dataset, notebook) not in app.get(url, headers=_auth(stranger)).body


def test_others_get_a_page_saying_only_editors_set_up_reports(app, editor_and_notebook):
    editor, dataset, notebook = editor_and_notebook
    stranger = factories.User()
    page = app.get(_url(dataset, notebook), headers=_auth(stranger))
    assert page.status_code == 403
    assert "Only users who may edit this dataset can set up its reports" in page.body
    anonymous = app.get(_url(dataset, notebook))
    assert anonymous.status_code == 403
    assert "Log in to set up reports" in anonymous.body


def test_a_resource_that_is_not_a_notebook_has_no_report_page(app, editor_and_notebook):
    editor, dataset, notebook = editor_and_notebook
    csv = factories.Resource(package_id=dataset["id"], url="http://example.org/a.csv",
                             format="CSV")
    page = app.get(_url(dataset, csv), headers=_auth(editor))
    assert page.status_code == 404
    assert "Only notebook (.ipynb) resources can be set up as reports" in page.body


def test_setting_up_saves_typed_values_and_a_bad_schedule_is_explained(
        app, editor_and_notebook, report_queue):
    editor, dataset, notebook = editor_and_notebook
    headers = _auth(editor)
    bad = app.post(_url(dataset, notebook, "save"), headers=headers, data={
        "param-year": "2024", "schedule": "every morning", "timezone": "UTC",
        "time_limit": "300"})
    assert bad.status_code == 400
    assert "A schedule has five fields" in bad.body
    assert 'value="every morning"' in bad.body  # what was typed stays
    bad_zone = app.post(_url(dataset, notebook, "save"), headers=headers, data={
        "timezone": "Atlantis/Capital", "time_limit": "300"})
    assert bad_zone.status_code == 400
    assert "Unknown time zone" in bad_zone.body
    bad_json = app.post(_url(dataset, notebook, "save"), headers=headers, data={
        "parameters_json": "{region: north", "time_limit": "300"})
    assert bad_json.status_code == 400
    assert "must be a JSON object" in bad_json.body

    saved = app.post(_url(dataset, notebook, "save"), headers=headers, data={
        "param-year": "2024", "param-region": "south", "param-limit": "",
        "schedule": "0 7 * * 1-5", "timezone": "Europe/Berlin",
        "on_data_change": "on", "time_limit": "300"})
    assert saved.status_code == 200
    assert "The notebook is set up as a report" in saved.body
    report = helpers.call_action("jupyternotebook_report_list", {},
                                 dataset_id=dataset["id"])[0]
    assert report["parameters"] == {"year": 2024, "region": "south"}
    assert report["schedule"] == "0 7 * * 1-5"
    assert report["timezone"] == "Europe/Berlin"
    assert report["on_data_change"] is True
    assert report["time_limit"] == 300

    queued = app.post(_url(dataset, notebook, "run"), headers=headers,
                      data={"run_parameters_json": '{"year": 1999}'})
    assert "The report run is queued" in queued.body
    run = helpers.call_action("jupyternotebook_report_run_list", {},
                              id=report["id"])[0]
    assert run["parameters"] == {"year": 1999, "region": "south"}
    assert re.search(rf'data-run-id="{run["id"]}" data-status="queued"', queued.body)

    again = app.post(_url(dataset, notebook, "run"), headers=headers, data={})
    assert again.status_code == 400
    assert "already queued or running" in again.body

    cancelled = app.post(_url(dataset, notebook, "cancel", run_id=run["id"]),
                         headers=headers)
    assert "The run is cancelled" in cancelled.body
    assert helpers.call_action("jupyternotebook_report_run_show", {},
                               id=run["id"])["status"] == "cancelled"


def test_a_logged_in_browser_post_needs_the_forms_csrf_token(app, editor_and_notebook):
    editor, dataset, notebook = editor_and_notebook
    user = factories.User(password="Correct-horse-9")
    helpers.call_action("member_create", {}, id=dataset["owner_org"], object=user["name"],
                        object_type="user", capacity="editor")
    login = app.get(tk.url_for("user.login"))
    token = re.search(r'name="_csrf_token" value="([^"]+)"', login.body).group(1)
    app.post(tk.url_for("user.login"), data={
        "login": user["name"], "password": "Correct-horse-9", "_csrf_token": token})
    forged = app.post(_url(dataset, notebook, "save"), data={"time_limit": "300"},
                      follow_redirects=False)
    assert forged.status_code in (400, 403)
    assert helpers.call_action("jupyternotebook_report_list", {},
                               dataset_id=dataset["id"]) == []
    page = app.get(_url(dataset, notebook))
    token = re.search(r'name="_csrf_token" value="([^"]+)"', page.body).group(1)
    saved = app.post(_url(dataset, notebook, "save"),
                     data={"time_limit": "300", "_csrf_token": token})
    assert "The notebook is set up as a report" in saved.body


def test_declared_parameters_of_papermill_and_colab():
    from ckanext.jupyternotebook.reports import notebook_params

    from .conftest import NOTEBOOK

    assert notebook_params.declared(NOTEBOOK) == [
        {"name": "year", "default": 2020, "source": "papermill"},
        {"name": "region", "default": "north", "source": "papermill"},
        {"name": "limit", "default": 5, "source": "colab"},
    ]
