"""``ckan jupyter reports``, ``ckan jupyter run`` and ``ckan jupyter
scheduler --once`` against real PostgreSQL and Redis."""
from __future__ import annotations

import datetime as dt
import json

import pytest

from ckan.cli.cli import ckan
from ckan.tests import helpers

pytestmark = pytest.mark.usefixtures("clean_db", "with_plugins")


def _report(editor, notebook, **fields):
    return helpers.call_action(
        "jupyternotebook_report_create", {"user": editor["name"], "ignore_auth": False},
        resource_id=notebook["id"], **fields)


def test_reports_lists_a_datasets_reports_with_their_schedule(cli, editor_and_notebook):
    editor, dataset, notebook = editor_and_notebook
    report = _report(editor, notebook, schedule="0 7 * * *", timezone="Europe/Berlin")
    result = cli.invoke(ckan, ["jupyter", "reports", "--dataset", dataset["name"]])
    assert result.exit_code == 0, result.output
    assert report["id"] in result.output
    assert "0 7 * * * Europe/Berlin" in result.output
    listed = cli.invoke(ckan, ["jupyter", "reports", "--json"])
    # CKAN 2.10's CLI logs to the same output: the JSON starts at "[\n"
    body = listed.output[listed.output.index("[\n"):]
    assert [r["id"] for r in json.loads(body)] == [report["id"]]
    missing = cli.invoke(ckan, ["jupyter", "reports", "--dataset", "no-such-dataset"])
    assert missing.exit_code == 1
    assert "no dataset no-such-dataset" in missing.output


def test_run_queues_a_run_and_refuses_bad_parameters(cli, editor_and_notebook, report_queue):
    editor, dataset, notebook = editor_and_notebook
    report = _report(editor, notebook)
    bad = cli.invoke(ckan, ["jupyter", "run", report["id"], "--parameters", "[1, 2]"])
    assert bad.exit_code == 1
    assert "Parameters must be a JSON object" in bad.output
    result = cli.invoke(ckan, ["jupyter", "run", report["id"], "--parameters", '{"year": 2033}'])
    assert result.exit_code == 0, result.output
    assert ": queued" in result.output
    run = helpers.call_action("jupyternotebook_report_run_list", {}, id=report["id"])[0]
    assert run["parameters"] == {"year": 2033}
    assert len(report_queue.jobs) == 1
    assert cli.invoke(ckan, ["jupyter", "run", "no-such-report"]).exit_code == 1


def test_scheduler_once_fires_what_is_due(cli, editor_and_notebook, report_queue):
    from ckan import model
    from ckanext.jupyternotebook.reports.model import Report

    editor, dataset, notebook = editor_and_notebook
    report = _report(editor, notebook, schedule="* * * * *")
    row = Report.get(report["id"])
    row.next_run_at = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=3)
    model.Session.commit()
    result = cli.invoke(ckan, ["jupyter", "scheduler", "--once"])
    assert result.exit_code == 0, result.output
    assert "queued 1 run(s)" in result.output
    assert [r["trigger"] for r in helpers.call_action(
        "jupyternotebook_report_run_list", {}, id=report["id"])] == ["schedule"]
