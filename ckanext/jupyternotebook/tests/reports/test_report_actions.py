"""The report actions against real PostgreSQL and Redis: tables made by the
plugin's migration, validation that names what is wrong, access like the
notebook resource's, runs queued on the jupyter-reports queue, cancel."""
from __future__ import annotations

import pytest

from ckan.tests import factories, helpers

from .conftest import upload

pytestmark = pytest.mark.usefixtures("clean_db", "with_plugins")


def _create(editor, notebook, **fields):
    return helpers.call_action(
        "jupyternotebook_report_create", {"user": editor["name"], "ignore_auth": False},
        resource_id=notebook["id"], **fields)


def _error(excinfo, field):
    return " ".join(str(m) for m in excinfo.value.error_dict[field])


def test_the_migration_makes_both_tables_at_its_head():
    import sqlalchemy as sa
    from ckan import model

    inspector = sa.inspect(model.meta.engine)
    assert inspector.has_table("jupyternotebook_report")
    assert inspector.has_table("jupyternotebook_report_run")
    with model.meta.engine.connect() as conn:
        version = conn.execute(sa.text(
            "SELECT version_num FROM jupyternotebook_alembic_version"
        )).scalar()
    assert version == "4d1e2a7c9b10"
    indexes = {i["name"]: i for i in
               inspector.get_indexes("jupyternotebook_report_run")}
    assert indexes["jupyternotebook_report_run_one_active"]["unique"]


def test_a_report_is_created_with_defaults_and_its_next_run(
        editor_and_notebook):
    editor, dataset, notebook = editor_and_notebook
    report = _create(editor, notebook, parameters={"year": 2024},
                     schedule="*/5 * * * *", timezone="Europe/Berlin")
    assert report["resource_id"] == notebook["id"]
    assert report["dataset_id"] == dataset["id"]
    assert report["parameters"] == {"year": 2024}
    assert report["schedule"] == "*/5 * * * *"
    assert report["timezone"] == "Europe/Berlin"
    assert report["on_data_change"] is False
    assert report["time_limit"] == 600
    assert report["created_by"] == editor["id"]
    assert report["next_run_at"].endswith("Z")
    minute = int(report["next_run_at"][14:16])
    assert minute % 5 == 0
    shown = helpers.call_action("jupyternotebook_report_show",
                                {"user": editor["name"], "ignore_auth": False}, id=report["id"])
    assert shown == report


@pytest.mark.parametrize("fields, field, words", [
    ({"schedule": "61 * * * *"}, "schedule", "not a valid cron expression"),
    ({"schedule": "* * *"}, "schedule", "five fields"),
    ({"schedule": "0 0 31 2 *"}, "schedule", "never fires"),
    ({"timezone": "Mars/Olympus"}, "timezone", "Unknown time zone"),
    ({"parameters": "{year: 2024"}, "parameters", "must be a JSON object"),
    ({"parameters": {"year": [1, 2]}}, "parameters",
     "must be a string, number, true, false or null"),
    ({"parameters": {"2bad": 1}}, "parameters", "not a Python variable name"),
    ({"time_limit": 5}, "time_limit", "between 10 and 86400"),
    ({"time_limit": "soon"}, "time_limit", "whole number of seconds"),
])
def test_bad_input_is_refused_with_a_message_naming_it(
        editor_and_notebook, fields, field, words):
    editor, dataset, notebook = editor_and_notebook
    with pytest.raises(helpers.logic.ValidationError) as excinfo:
        _create(editor, notebook, **fields)
    assert words in _error(excinfo, field)


def test_a_resource_that_is_not_a_notebook_cannot_be_a_report(
        editor_and_notebook):
    editor, dataset, notebook = editor_and_notebook
    csv = helpers.call_action(
        "resource_create", {"user": editor["name"], "ignore_auth": False},
        package_id=dataset["id"], name="data.csv", format="CSV",
        url="data.csv", upload=upload("data.csv", b"a,b\n1,2\n"))
    with pytest.raises(helpers.logic.ValidationError) as excinfo:
        _create(editor, csv)
    assert "Only notebook (.ipynb) resources" in _error(excinfo,
                                                        "resource_id")


def test_a_notebook_has_one_report(editor_and_notebook):
    editor, dataset, notebook = editor_and_notebook
    first = _create(editor, notebook)
    with pytest.raises(helpers.logic.ValidationError) as excinfo:
        _create(editor, notebook)
    assert first["id"] in _error(excinfo, "resource_id")


def test_writes_need_the_right_to_edit_the_notebook_and_reads_to_see_it(
        editor_and_notebook):
    editor, dataset, notebook = editor_and_notebook
    stranger = factories.User()
    with pytest.raises(helpers.logic.NotAuthorized):
        _create(stranger, notebook)
    report = _create(editor, notebook)
    # the dataset is public: anybody may read the report and its runs
    assert helpers.call_action("jupyternotebook_report_show",
                               {"user": stranger["name"], "ignore_auth": False},
                               id=report["id"])["id"] == report["id"]
    for action, data in [
            ("jupyternotebook_report_update", {"id": report["id"],
                                               "time_limit": 60}),
            ("jupyternotebook_report_execute", {"id": report["id"]}),
            ("jupyternotebook_report_delete", {"id": report["id"]})]:
        with pytest.raises(helpers.logic.NotAuthorized):
            helpers.call_action(action, {"user": stranger["name"], "ignore_auth": False}, **data)


def test_a_private_datasets_reports_are_hidden_from_outsiders(
        editor_and_notebook):
    editor, dataset, notebook = editor_and_notebook
    report = _create(editor, notebook)
    helpers.call_action("package_patch", {"user": editor["name"], "ignore_auth": False},
                        id=dataset["id"], private=True)
    stranger = factories.User()
    with pytest.raises(helpers.logic.NotAuthorized):
        helpers.call_action("jupyternotebook_report_show",
                            {"user": stranger["name"], "ignore_auth": False}, id=report["id"])
    with pytest.raises(helpers.logic.NotAuthorized):
        helpers.call_action("jupyternotebook_report_list",
                            {"user": stranger["name"], "ignore_auth": False},
                            dataset_id=dataset["id"])
    assert [r["id"] for r in helpers.call_action(
        "jupyternotebook_report_list", {"user": editor["name"], "ignore_auth": False},
        dataset_id=dataset["id"])] == [report["id"]]


def test_update_changes_only_what_is_given_and_moves_the_next_run(
        editor_and_notebook):
    editor, dataset, notebook = editor_and_notebook
    report = _create(editor, notebook, parameters={"year": 2024},
                     schedule="0 7 * * *")
    updated = helpers.call_action(
        "jupyternotebook_report_update", {"user": editor["name"], "ignore_auth": False},
        id=report["id"], schedule="", on_data_change=True)
    assert updated["schedule"] is None
    assert updated["next_run_at"] is None
    assert updated["on_data_change"] is True
    assert updated["parameters"] == {"year": 2024}


def test_run_now_queues_one_job_with_the_time_limit_and_a_margin(
        editor_and_notebook, report_queue):
    from ckanext.jupyternotebook.reports import jobs

    editor, dataset, notebook = editor_and_notebook
    report = _create(editor, notebook, parameters={"year": 2024},
                     time_limit=120)
    run = helpers.call_action(
        "jupyternotebook_report_execute", {"user": editor["name"], "ignore_auth": False},
        id=report["id"], parameters={"region": "south"})
    assert run["status"] == "queued"
    assert run["trigger"] == "manual"
    assert run["parameters"] == {"year": 2024, "region": "south"}
    queued = report_queue.jobs
    assert len(queued) == 1
    assert queued[0].args == [run["id"]] or queued[0].args == (run["id"],)
    assert queued[0].timeout == 120 + jobs.MARGIN
    # never two at once: a second Run now is refused while one is queued
    with pytest.raises(helpers.logic.ValidationError) as excinfo:
        helpers.call_action("jupyternotebook_report_execute",
                            {"user": editor["name"], "ignore_auth": False}, id=report["id"])
    assert "already queued or running" in _error(excinfo, "id")
    assert len(report_queue.jobs) == 1
    runs = helpers.call_action("jupyternotebook_report_run_list",
                               {"user": editor["name"], "ignore_auth": False}, id=report["id"])
    assert [r["id"] for r in runs] == [run["id"]]


def test_cancelling_a_queued_run_marks_it_and_takes_its_job_off_the_queue(
        editor_and_notebook, report_queue):
    editor, dataset, notebook = editor_and_notebook
    report = _create(editor, notebook)
    run = helpers.call_action("jupyternotebook_report_execute",
                              {"user": editor["name"], "ignore_auth": False}, id=report["id"])
    cancelled = helpers.call_action("jupyternotebook_report_run_cancel",
                                    {"user": editor["name"], "ignore_auth": False}, id=run["id"])
    assert cancelled["status"] == "cancelled"
    assert cancelled["finished_at"]
    assert f"Cancelled by {editor['name']}" in cancelled["error"]["message"]
    assert report_queue.jobs == []
    with pytest.raises(helpers.logic.ValidationError) as excinfo:
        helpers.call_action("jupyternotebook_report_run_cancel",
                            {"user": editor["name"], "ignore_auth": False}, id=run["id"])
    assert "already ended (cancelled)" in _error(excinfo, "id")
    # the report may run again
    again = helpers.call_action("jupyternotebook_report_execute",
                                {"user": editor["name"], "ignore_auth": False}, id=report["id"])
    assert again["status"] == "queued"


def test_a_queued_job_of_a_cancelled_run_does_nothing(
        editor_and_notebook, report_queue):
    from ckanext.jupyternotebook.reports import jobs

    editor, dataset, notebook = editor_and_notebook
    report = _create(editor, notebook)
    run = helpers.call_action("jupyternotebook_report_execute",
                              {"user": editor["name"], "ignore_auth": False}, id=report["id"])
    helpers.call_action("jupyternotebook_report_run_cancel",
                        {"user": editor["name"], "ignore_auth": False}, id=run["id"])
    jobs.run_report(run["id"])  # as a worker that took it just before
    shown = helpers.call_action("jupyternotebook_report_run_show",
                                {"user": editor["name"], "ignore_auth": False}, id=run["id"])
    assert shown["status"] == "cancelled"
    assert shown["started_at"] is None


def test_deleting_a_report_keeps_what_it_published(editor_and_notebook):
    editor, dataset, notebook = editor_and_notebook
    report = _create(editor, notebook)
    helpers.call_action("jupyternotebook_report_delete",
                        {"user": editor["name"], "ignore_auth": False}, id=report["id"])
    with pytest.raises(helpers.logic.NotFound):
        helpers.call_action("jupyternotebook_report_show",
                            {"user": editor["name"], "ignore_auth": False}, id=report["id"])
    assert helpers.call_action("resource_show", {},
                               id=notebook["id"])["id"] == notebook["id"]


def test_the_api_answers_a_bad_schedule_with_a_409_and_the_message(
        app, editor_and_notebook):
    editor, dataset, notebook = editor_and_notebook
    token = factories.APIToken(user=editor["id"])["token"]
    response = app.post("/api/3/action/jupyternotebook_report_create",
                        json={"resource_id": notebook["id"],
                              "schedule": "every morning"},
                        headers={"Authorization": token})
    assert response.status_code == 409
    error = response.json["error"]
    assert "five fields" in " ".join(error["schedule"])


def test_a_run_of_a_removed_notebook_fails_saying_so_and_pauses_the_schedule(
        editor_and_notebook, report_queue):
    from ckanext.jupyternotebook.reports import jobs

    editor, dataset, notebook = editor_and_notebook
    report = _create(editor, notebook, schedule="* * * * *")
    run = helpers.call_action("jupyternotebook_report_execute",
                              {"user": editor["name"], "ignore_auth": False},
                              id=report["id"])
    helpers.call_action("resource_delete", {"user": editor["name"], "ignore_auth": False},
                        id=notebook["id"])
    jobs.run_report(run["id"])  # as the worker does
    shown = helpers.call_action("jupyternotebook_report_run_show", {}, id=run["id"])
    assert shown["status"] == "failed"
    assert "notebook resource of this report was removed" in shown["error"]["message"]
    assert shown["published"] == []
    assert helpers.call_action("jupyternotebook_report_show", {},
                               id=report["id"])["next_run_at"] is None


def test_a_run_whose_publisher_lost_access_fails_before_reaching_the_bridge(
        editor_and_notebook, report_queue, bridge_down):
    from ckanext.jupyternotebook.reports import jobs

    editor, dataset, notebook = editor_and_notebook
    report = _create(editor, notebook)
    run = helpers.call_action("jupyternotebook_report_execute",
                              {"user": editor["name"], "ignore_auth": False},
                              id=report["id"])
    admin = {"user": factories.Sysadmin()["name"]}
    helpers.call_action("package_patch", dict(admin), id=dataset["id"], private=True)
    helpers.call_action("organization_member_delete", dict(admin),
                        id=dataset["owner_org"], username=editor["name"])
    jobs.run_report(run["id"])
    shown = helpers.call_action("jupyternotebook_report_run_show", {}, id=run["id"])
    assert shown["status"] == "failed"
    assert (f"publisher {editor['name']} may no longer read this notebook"
            in shown["error"]["message"])
