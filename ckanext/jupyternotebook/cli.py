"""``ckan jupyter ...``: look at and steer the notebook service from a shell.

Every command exits 0 on success and 1 when the notebook service cannot be
reached or refuses; ``--json`` prints machine-readable output.
"""
from __future__ import annotations

import json
import sys
from typing import Any

import click

import ckan.plugins.toolkit as tk


def _site_context() -> dict[str, Any]:
    site_user = tk.get_action("get_site_user")({"ignore_auth": True}, {})
    return {"user": site_user["name"], "ignore_auth": True}


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def _fail(message: str) -> None:
    click.secho(message, fg="red", err=True)
    sys.exit(1)


@click.group(short_help="Jupyter notebook sessions: status, sessions, "
                        "stop, push-settings, workspaces.")
def jupyter():
    """Look at and steer the JupyterHub notebook service."""


@jupyter.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status(as_json: bool):
    """Bridge and hub health, capacity and whether settings are in force."""
    from .settings_sync import sync
    from .hub_client import BridgeError, HubClient

    client = HubClient.from_config()
    result: dict[str, Any] = {"api_url": client.api_url}
    try:
        result["health"] = client.health()
    except BridgeError as err:
        result["health"] = {"status": "down",
                            "error": getattr(err, "message", str(err))}
    up = result["health"].get("status") == "ok"
    if up:
        try:
            result["capacity"] = client.capacity()
        except BridgeError as err:
            result["capacity"] = None
            result["capacity_error"] = getattr(err, "message", str(err))
            up = False
        result["settings_in_sync"] = sync.resync(
            client, force=True)
    result["settings_pending"] = sync.is_pending()

    if as_json:
        _echo_json(result)
    else:
        health = result["health"]
        if health.get("status") == "ok":
            click.echo(f"bridge: ok ({client.api_url}), hub: "
                       f"{health.get('hub', '?')}, version "
                       f"{health.get('version', '?')}")
        else:
            click.echo(f"bridge: DOWN ({client.api_url}): "
                       f"{health.get('error') or health}")
        cap = result.get("capacity")
        if cap:
            click.echo(
                f"guests: {cap['guests']['active']}/{cap['guests']['max']}  "
                f"sessions: {cap['sessions']['active']}/"
                f"{cap['sessions']['max']}  "
                f"users: {cap.get('users', {}).get('active', 0)}  "
                f"pool: {cap['pool']['ready']}/{cap['pool']['size']}")
        click.echo("settings: " + (
            "pending (not yet pushed)" if result["settings_pending"]
            else "in force on the bridge" if result.get("settings_in_sync")
            else "unknown"))
    if not up:
        sys.exit(1)


@jupyter.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def sessions(as_json: bool):
    """List every live session."""
    from . import admin
    from .hub_client import BridgeError

    try:
        found = tk.get_action("jupyternotebook_session_list")(
            _site_context(), {"all": True})
    except BridgeError as err:
        _fail(f"cannot list sessions: {getattr(err, 'message', err)}")
        return
    if as_json:
        _echo_json(found)
        return
    if not found:
        click.echo("no live sessions")
        return
    rows = admin.session_rows(found)
    click.echo(f"{'ID':<24} {'DATASET':<28} {'USER':<28} {'STATUS':<9} "
               f"{'AGE':>12} {'LEFT':>12}")
    for row in rows:
        click.echo(
            f"{str(row.get('id')):<24} "
            f"{str(row.get('dataset_name') or row.get('dataset_id')):<28} "
            f"{str(row.get('hub_user')):<28} {str(row.get('status')):<9} "
            f"{row['age']:>12} {row['time_left']:>12}")


@jupyter.command()
@click.argument("session_id")
def stop(session_id: str):
    """Stop one session and discard everything done in it."""
    from .hub_client import BridgeError

    try:
        tk.get_action("jupyternotebook_session_delete")(
            _site_context(), {"id": session_id})
    except tk.ObjectNotFound:
        _fail(f"no session {session_id}")
    except BridgeError as err:
        _fail(f"could not stop {session_id}: {getattr(err, 'message', err)}")
    else:
        click.echo(f"stopped {session_id}")


@jupyter.command("push-settings")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def push_settings(as_json: bool):
    """Send CKAN's runtime settings to the bridge now."""
    from .settings_sync import sync
    from .hub_client import BridgeError

    try:
        answer = sync.push()
    except BridgeError as err:
        _fail("could not push settings (they will be pushed again when the "
              f"bridge answers): {getattr(err, 'message', err)}")
        return
    if as_json:
        _echo_json(answer)
    else:
        from . import settings
        for key in sorted(settings.RUNTIME_EDITABLE):
            click.echo(f"{key} = {answer.get(key)}")


@jupyter.command()
@click.option("--delete", "delete_user", metavar="USER",
              help="Delete this user's workspace (name or id) and its files.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def workspaces(delete_user: str | None, as_json: bool):
    """List the workspaces that last, largest first, or delete one."""
    from .hub_client import BridgeError, HubUnavailable

    if delete_user:
        try:
            tk.get_action("jupyternotebook_workspace_delete")(
                _site_context(), {"user_id": delete_user})
        except tk.ObjectNotFound as err:
            _fail(f"no workspace to delete for {delete_user}: {err.message or 'no such user'}")
        except HubUnavailable as err:
            _fail(f"could not delete the workspace of {delete_user}: {err.message}")
        except tk.ValidationError as err:
            messages = [str(m) for ms in (err.error_dict or {}).values() for m in ms]
            _fail(f"could not delete the workspace of {delete_user}: {' '.join(messages)}")
        else:
            click.echo(f"deleted the workspace of {delete_user}")
        return
    try:
        found = tk.get_action("jupyternotebook_workspace_list")(
            _site_context(), {"all": True})
    except BridgeError as err:
        _fail(f"cannot list workspaces: {getattr(err, 'message', err)}")
        return
    if as_json:
        _echo_json(found)
        return
    if not found["workspaces"]:
        click.echo("no workspaces")
        return
    from ckan.lib.formatters import localised_filesize
    click.echo(f"{'USER':<28} {'SIZE':>10} {'QUOTA':>10} {'LAST USED':<22}")
    for ws in found["workspaces"]:
        used = "in use now" if ws.get("in_use") else str(ws.get("last_used"))
        quota = localised_filesize(ws["quota"]) if ws.get("quota") else "-"
        click.echo(f"{str(ws.get('user_name') or ws['user_id']):<28} "
                   f"{localised_filesize(ws['size']):>10} {quota:>10} {used:<22}")
    click.echo(f"{found['count']} workspace(s), "
               f"{localised_filesize(found['total_size'])} in all")


# --------------------------------------------------------------------------
# reports (issue 14)


@jupyter.command()
@click.option("--dataset", "dataset_id", help="Only this dataset's reports "
              "(id or name).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def reports(dataset_id: str | None, as_json: bool):
    """List reports with their schedule and last run."""
    from ckan import model
    from .reports.model import Report, ReportRun

    if dataset_id:
        dataset = model.Package.get(dataset_id)
        if dataset is None:
            _fail(f"no dataset {dataset_id}")
            return
        found = Report.for_dataset(dataset.id)
    else:
        import sqlalchemy as sa
        found = list(model.Session.execute(
            sa.select(Report).order_by(Report.created_at)).scalars())
    rows = []
    for report in found:
        entry = report.as_dict()
        runs = ReportRun.for_report(report.id, limit=1)
        entry["last_run"] = runs[0].as_dict() if runs else None
        rows.append(entry)
    if as_json:
        _echo_json(rows)
        return
    if not rows:
        click.echo("no reports")
        return
    click.echo(f"{'ID':<36}  {'NOTEBOOK':<36}  {'SCHEDULE':<16} "
               f"{'NEXT RUN':<20} LAST RUN")
    for row in rows:
        last = row["last_run"]
        click.echo(
            f"{row['id']:<36}  {row['resource_id']:<36}  "
            f"{(row['schedule'] or '-') + ' ' + row['timezone']:<16} "
            f"{row['next_run_at'] or '-':<20} "
            f"{last['status'] + ' ' + (last['queued_at'] or '') if last else '-'}")


@jupyter.command("run")
@click.argument("report_id")
@click.option("--parameters", help="Values for this run only, a JSON object.")
@click.option("--wait/--no-wait", default=False,
              help="Wait until the run ends (a worker must serve the "
                   "jupyter-reports queue).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def run_report(report_id: str, parameters: str | None, wait: bool,
               as_json: bool):
    """Queue a run of a report now, as the site user."""
    import time

    data: dict[str, Any] = {"id": report_id}
    if parameters:
        data["parameters"] = parameters
    try:
        run = tk.get_action("jupyternotebook_report_execute")(
            _site_context(), data)
    except tk.ObjectNotFound:
        _fail(f"no report {report_id}")
        return
    except tk.ValidationError as err:
        _fail("; ".join(f"{k}: {' '.join(map(str, v))}" if isinstance(v, list)
                        else f"{k}: {v}" for k, v in err.error_dict.items()))
        return
    while wait and run["status"] in ("queued", "running"):
        time.sleep(1)
        run = tk.get_action("jupyternotebook_report_run_show")(
            _site_context(), {"id": run["id"]})
    if as_json:
        _echo_json(run)
    else:
        click.echo(f"run {run['id']}: {run['status']}")
        if run.get("error"):
            click.echo(run["error"].get("message", ""))
    if run["status"] in ("failed", "timed_out", "cancelled"):
        sys.exit(1)


@jupyter.command()
@click.option("--interval", type=click.FloatRange(0.2, 3600), default=5.0,
              show_default=True, help="Seconds between two looks at the "
              "schedules.")
@click.option("--once", is_flag=True, help="Fire what is due now, then exit.")
def scheduler(interval: float, once: bool):
    """Fire report schedules (any number of these may run: each period
    fires once)."""
    import signal

    from .reports import scheduler as report_scheduler

    if once:
        fired = report_scheduler.tick()
        click.echo(f"queued {len(fired)} run(s)")
        return
    stopping = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.append(True))
    report_scheduler.run_forever(interval, should_stop=lambda: bool(stopping))
