"""The scheduler against real PostgreSQL: a period fires once, also when
several schedulers look at once; missed periods collapse into one run; a
report with a run still going skips the period. And "run when the data
changes": a new resource queues a run, a report's or a session's own
resources never do."""
from __future__ import annotations

import datetime as dt
import threading

import pytest

from ckan.tests import helpers

from .conftest import upload

pytestmark = pytest.mark.usefixtures("clean_db", "with_plugins")


def _report(editor, notebook, **fields):
    return helpers.call_action(
        "jupyternotebook_report_create", {"user": editor["name"], "ignore_auth": False},
        resource_id=notebook["id"], **fields)


def _runs(editor, report):
    return helpers.call_action("jupyternotebook_report_run_list",
                               {"user": editor["name"], "ignore_auth": False}, id=report["id"])


def _make_due(report_id, when):
    from ckan import model
    from ckanext.jupyternotebook.reports.model import Report

    row = Report.get(report_id)
    row.next_run_at = when
    model.Session.commit()


def test_a_due_schedule_fires_once_and_moves_to_the_next_period(
        editor_and_notebook, report_queue):
    from ckanext.jupyternotebook.reports import scheduler

    editor, dataset, notebook = editor_and_notebook
    report = _report(editor, notebook, schedule="* * * * *",
                     parameters={"year": 2030})
    now = dt.datetime.now(dt.timezone.utc)
    _make_due(report["id"], now - dt.timedelta(seconds=1))
    fired = scheduler.fire_due(now)
    assert len(fired) == 1
    assert scheduler.fire_due(now) == []
    runs = _runs(editor, report)
    assert [(r["trigger"], r["parameters"]) for r in runs] == [
        ("schedule", {"year": 2030})]
    assert len(report_queue.jobs) == 1
    shown = helpers.call_action("jupyternotebook_report_show",
                                {"user": editor["name"], "ignore_auth": False}, id=report["id"])
    next_run = dt.datetime.fromisoformat(
        shown["next_run_at"].replace("Z", "+00:00"))
    assert now < next_run <= now + dt.timedelta(minutes=1)


def test_periods_missed_while_down_run_once_on_resume(
        editor_and_notebook, report_queue):
    from ckanext.jupyternotebook.reports import scheduler

    editor, dataset, notebook = editor_and_notebook
    report = _report(editor, notebook, schedule="*/5 * * * *")
    now = dt.datetime.now(dt.timezone.utc)
    _make_due(report["id"], now - dt.timedelta(days=2))  # ~576 periods
    assert len(scheduler.fire_due(now)) == 1
    assert len(_runs(editor, report)) == 1
    shown = helpers.call_action("jupyternotebook_report_show",
                                {"user": editor["name"], "ignore_auth": False}, id=report["id"])
    assert shown["next_run_at"] > now.isoformat()[:19]


def test_a_report_still_running_skips_the_period(editor_and_notebook,
                                                 report_queue):
    from ckanext.jupyternotebook.reports import scheduler

    editor, dataset, notebook = editor_and_notebook
    report = _report(editor, notebook, schedule="* * * * *")
    helpers.call_action("jupyternotebook_report_execute",
                        {"user": editor["name"], "ignore_auth": False}, id=report["id"])
    now = dt.datetime.now(dt.timezone.utc)
    _make_due(report["id"], now - dt.timedelta(seconds=1))
    assert scheduler.fire_due(now) == []
    assert [r["trigger"] for r in _runs(editor, report)] == ["manual"]
    # and the period moved on: it is not fired late when the run ends
    shown = helpers.call_action("jupyternotebook_report_show",
                                {"user": editor["name"], "ignore_auth": False}, id=report["id"])
    assert shown["next_run_at"] > now.isoformat()[:19]


def test_schedulers_looking_at_once_fire_a_period_once(
        editor_and_notebook, report_queue):
    from ckan import model
    from ckanext.jupyternotebook.reports import scheduler

    editor, dataset, notebook = editor_and_notebook
    reports = [_report(editor, notebook, schedule="* * * * *")]
    # more reports on more notebooks of the dataset
    for n in range(4):
        extra = helpers.call_action(
            "resource_create", {"user": editor["name"], "ignore_auth": False},
            package_id=dataset["id"], name=f"n{n}.ipynb", format="ipynb",
            url=f"n{n}.ipynb",
            upload=upload(f"n{n}.ipynb", b'{"nbformat": 4, "nbformat_minor":'
                          b' 5, "metadata": {}, "cells": []}'))
        reports.append(_report(editor, extra, schedule="* * * * *"))
    now = dt.datetime.now(dt.timezone.utc)
    for report in reports:
        _make_due(report["id"], now - dt.timedelta(seconds=1))
    model.Session.remove()

    start = threading.Barrier(8)
    fired: list[str] = []
    errors: list[BaseException] = []

    def one_scheduler():
        try:
            start.wait()
            fired.extend(scheduler.fire_due(now))
        except BaseException as err:  # reported below
            errors.append(err)
        finally:
            model.Session.remove()

    threads = [threading.Thread(target=one_scheduler) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert len(fired) == len(set(fired)) == len(reports)
    for report in reports:
        assert len(_runs(editor, report)) == 1
    assert len(report_queue.jobs) == len(reports)


def test_a_new_resource_queues_a_run_when_on_data_change_is_on(
        editor_and_notebook, report_queue):
    editor, dataset, notebook = editor_and_notebook
    report = _report(editor, notebook, on_data_change=True)
    helpers.call_action(
        "resource_create", {"user": editor["name"], "ignore_auth": False},
        package_id=dataset["id"], name="new.csv", format="CSV",
        url="new.csv", upload=upload("new.csv", b"a\n1\n"))
    runs = _runs(editor, report)
    assert [(r["trigger"], r["status"]) for r in runs] == [
        ("data_change", "queued")]
    assert len(report_queue.jobs) == 1


@pytest.mark.parametrize("origin", ["report", "session"])
def test_resources_of_reports_and_sessions_never_trigger_a_run(
        editor_and_notebook, report_queue, origin):
    editor, dataset, notebook = editor_and_notebook
    report = _report(editor, notebook, on_data_change=True)
    created = helpers.call_action(
        "resource_create", {"user": editor["name"], "ignore_auth": False},
        package_id=dataset["id"], name="out.csv", format="CSV",
        url="out.csv", upload=upload("out.csv", b"a\n1\n"),
        jupyternotebook_origin=origin)
    helpers.call_action("resource_patch", {"user": editor["name"], "ignore_auth": False},
                        id=created["id"],
                        upload=upload("out.csv", b"a\n2\n"), url="out.csv")
    assert _runs(editor, report) == []
    assert report_queue.jobs == []


def test_without_on_data_change_a_new_resource_queues_nothing(
        editor_and_notebook, report_queue):
    editor, dataset, notebook = editor_and_notebook
    report = _report(editor, notebook)
    helpers.call_action(
        "resource_create", {"user": editor["name"], "ignore_auth": False},
        package_id=dataset["id"], name="new.csv", format="CSV",
        url="new.csv", upload=upload("new.csv", b"a\n1\n"))
    assert _runs(editor, report) == []


def test_a_lost_job_fails_its_run_with_a_message(editor_and_notebook,
                                                 report_queue):
    from ckanext.jupyternotebook.reports import scheduler

    editor, dataset, notebook = editor_and_notebook
    report = _report(editor, notebook)
    run = helpers.call_action("jupyternotebook_report_execute",
                              {"user": editor["name"], "ignore_auth": False}, id=report["id"])
    report_queue.empty()  # Redis lost the job
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(
        seconds=scheduler.LOST_JOB_GRACE + 5)
    assert scheduler.end_lost_runs(later) == [run["id"]]
    shown = helpers.call_action("jupyternotebook_report_run_show",
                                {"user": editor["name"], "ignore_auth": False}, id=run["id"])
    assert shown["status"] == "failed"
    assert "background job of this run was lost" in shown["error"]["message"]
