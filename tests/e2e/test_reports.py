"""Reports (issue 14) through the real pieces: CKAN (gunicorn), PostgreSQL,
Redis, two CKAN workers on the jupyter-reports queue, two report
schedulers, the bridge and the hub (local spawner, papermill in a session
server of the run's own).

- a report with a parameter and ``* * * * *`` publishes, within two
  minutes, the executed notebook (showing the value) and an artifact CSV;
  the next period replaces both as new uploads of the same resources; each
  period fired once although two schedulers run; a failing run publishes
  nothing and shows its error and traceback (the run history, screenshot);
- a notebook past its time limit is timed_out and leaves nothing behind;
- a new CSV on the dataset runs a report with on_data_change, and what the
  run publishes does not run it again;
- Cancel on the report page (a form with CSRF) stops a running run;
- a publisher who lost access to the dataset: the run stops, saying so.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

import nbformat
import pytest
import requests
from nbformat.v4 import new_code_cell, new_notebook

from dev.stack import CKAN_BIN
from dev.testing import Browser, holds_throughout, wait_until

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "Reports-pass-1234"
# The README's screenshot; the test saves it in its tmp_path unless asked:
#   REPORTS_SCREENSHOT=docs/reports-run-history.png pytest tests/e2e/test_reports.py -k scheduled
SCREENSHOT = os.environ.get("REPORTS_SCREENSHOT")


def notebook(*cells: str, parameters: str | None = None) -> bytes:
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    if parameters is not None:
        nb.cells.append(new_code_cell(parameters, metadata={"tags": ["parameters"]}))
    nb.cells.extend(new_code_cell(c) for c in cells)
    return nbformat.writes(nb).encode()


REPORT = notebook(
    "import glob, os, uuid\n"
    "import pandas as pd\n"
    "df = pd.read_csv(sorted(glob.glob('data/*.csv'))[0])\n"
    "year = int(year)\n"
    "df['year'] = year\n"
    "df['run'] = uuid.uuid4().hex\n"
    "os.makedirs('output', exist_ok=True)\n"
    "df.to_csv('output/summary.csv', index=False)\n"
    "print(f'REPORT year={year} rows={len(df)} run={df.run[0]}')",
    parameters="year = 2000")
SLEEPING = notebook("import time\ntime.sleep(600)")
CSV = b"station,temp\nA,12.5\nB,13.1\n"


# --------------------------------------------------------------------------
# the processes and the data


@pytest.fixture(scope="module")
def report_processes(portal):
    """Two workers and two schedulers (each period must still fire once)."""
    stack = portal.stack
    stack.start_reports(workers=2, interval=1)
    stack.spawn("report-scheduler-2", [str(CKAN_BIN / "ckan"), "-c", str(stack.ini), "jupyter",
                                       "scheduler", "--interval", "1"],
                {**stack.plugin_env(), "CKAN_INI": str(stack.ini)})
    yield stack
    stack.stop_reports()


class Publisher:
    def __init__(self, portal, private: bool = False):
        self.portal = portal
        suffix = uuid.uuid4().hex[:8]
        self.name = f"publisher-{suffix}"
        admin = portal.sysadmin.action
        self.user = admin.user_create(name=self.name, email=f"{self.name}@example.org",
                                      password=PASSWORD)
        self.org = admin.organization_create(name=f"reports-{suffix}")
        admin.organization_member_create(id=self.org["id"], username=self.name,
                                         role="editor")
        self.token = admin.api_token_create(user=self.name, name="reports")["token"]
        self.api = portal.api(self.token).action
        self.dataset = self.api.package_create(name=f"reports-{suffix}", owner_org=self.org["id"],
                                               private=private, title="Report data")

    def upload(self, name: str, data: bytes, fmt: str, tmp_path: Path, **extra) -> dict:
        path = tmp_path / f"{uuid.uuid4().hex}-{name}"
        path.write_bytes(data)
        with open(path, "rb") as stream:
            return self.api.resource_create(package_id=self.dataset["id"], name=name,
                                            format=fmt, url=name, upload=stream, **extra)

    def resources(self) -> list[dict]:
        return self.api.package_show(id=self.dataset["id"])["resources"]

    def published(self) -> dict[str, dict]:
        return {r["jupyternotebook_artifact"]: r for r in self.resources()
                if r.get("jupyternotebook_origin") == "report"}

    def runs(self, report: dict) -> list[dict]:
        return self.api.jupyternotebook_report_run_list(id=report["id"])

    def wait_for_runs(self, report: dict, count: int, timeout: float,
                      ended=("succeeded", "failed", "timed_out", "cancelled")) -> list[dict]:
        found: list[dict] = []

        def enough():
            found[:] = [r for r in self.runs(report) if r["status"] in ended]
            return len(found) >= count
        assert wait_until(enough, timeout=timeout, step=1), self.runs(report)
        return found


def download(resource: dict) -> bytes:
    resp = requests.get(resource["url"], timeout=60)
    resp.raise_for_status()
    return resp.content


def outputs_text(raw: bytes) -> str:
    nb = json.loads(raw)
    texts = []
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            text = out.get("text") or out.get("data", {}).get("text/plain") or ""
            texts.append("".join(text) if isinstance(text, list) else text)
    return "\n".join(texts)


def run_processes(stack) -> list[int]:
    prefix = str(stack.storage / "sessions") + "/run-"
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if os.readlink(proc / "cwd").startswith(prefix):
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


def nothing_left(stack) -> bool:
    return not sorted((stack.storage / "sessions").glob("run-*")) and not run_processes(stack)


def login(portal, name: str) -> Browser:
    browser = Browser()
    page = browser.get(f"{portal.url}/user/login")
    # CKAN 2.12's login form posts to its own page (action "")
    browser.submit(page, r"^$|/user/login", {"login": name, "password": PASSWORD})
    return browser


# --------------------------------------------------------------------------
# the tests


def test_a_scheduled_report_publishes_then_replaces_its_results_and_a_failure_publishes_nothing(
        portal, bridge, report_processes, tmp_path, chromium):
    pub = Publisher(portal)
    pub.upload("weather.csv", CSV, "CSV", tmp_path)
    nb = pub.upload("weekly.ipynb", REPORT, "ipynb", tmp_path)
    report = pub.api.jupyternotebook_report_create(
        resource_id=nb["id"], parameters={"year": 2031}, schedule="* * * * *",
        timezone="UTC", time_limit=120)
    created = time.monotonic()

    first = pub.wait_for_runs(report, 1, timeout=125)[-1]
    assert time.monotonic() - created < 120
    assert first["status"] == "succeeded", first
    assert first["trigger"] == "schedule"
    assert first["parameters"] == {"year": 2031}
    published = pub.published()
    assert set(published) == {"", "summary.csv"}
    executed, artifact = published[""], published["summary.csv"]
    assert sorted(first["published"]) == sorted([executed["id"], artifact["id"]])
    assert executed["name"] == "weekly (report)"
    assert artifact["name"] == "weekly (report): summary.csv"
    text = outputs_text(download(executed))
    assert "REPORT year=2031 rows=2" in text
    first_csv = download(artifact).decode()
    assert first_csv.splitlines()[0] == "station,temp,year,run"
    assert ",2031," in first_csv
    views = pub.api.resource_view_list(id=executed["id"])
    assert [v["view_type"] for v in views] == ["jupyter_notebook"]

    # the next period: new uploads of the same two resources
    second = pub.wait_for_runs(report, 2, timeout=150)[0]
    assert second["status"] == "succeeded", second
    again = pub.published()
    assert {k: r["id"] for k, r in again.items()} == {k: r["id"] for k, r in published.items()}
    assert again[""]["last_modified"] > executed["last_modified"]
    assert again["summary.csv"]["last_modified"] > artifact["last_modified"]
    second_csv = download(again["summary.csv"]).decode()
    assert second_csv != first_csv and ",2031," in second_csv
    assert outputs_text(download(again[""])) != text
    activity = pub.api.package_activity_list(id=pub.dataset["id"])
    assert len([a for a in activity if a["activity_type"] == "changed package"]) >= 4

    # two schedulers ran all along: each period fired once
    minutes = [r["queued_at"][:16] for r in pub.runs(report) if r["trigger"] == "schedule"]
    assert len(minutes) == len(set(minutes)), minutes

    # a failing run publishes nothing and tells why
    pub.api.jupyternotebook_report_update(id=report["id"], schedule="")
    assert wait_until(lambda: all(r["status"] not in ("queued", "running")
                                  for r in pub.runs(report)), timeout=120, step=1)
    before = {k: (r["id"], r["last_modified"]) for k, r in pub.published().items()}
    failing = pub.api.jupyternotebook_report_execute(id=report["id"],
                                                     parameters={"year": "not a year"})
    assert failing["trigger"] == "manual"
    failed = pub.wait_for_runs(report, len(pub.runs(report)), timeout=120)[0]
    assert failed["id"] == failing["id"]
    assert failed["status"] == "failed", failed
    assert failed["error"]["ename"] == "ValueError"
    assert "invalid literal for int()" in failed["error"]["evalue"]
    assert "year = int(year)" in failed["error"]["traceback"]
    assert "\x1b[" not in failed["error"]["traceback"]
    assert failed["error"]["cell_index"] is not None
    assert failed["published"] == []
    assert {k: (r["id"], r["last_modified"]) for k, r in pub.published().items()} == before

    # the run history, as the publisher sees it (the README's screenshot)
    chromium.get(f"{portal.url}/user/login")
    chromium.find_element("id", "field-login").send_keys(pub.name)
    chromium.find_element("id", "field-password").send_keys(PASSWORD)
    chromium.find_element("id", "field-password").submit()
    page = f"{portal.url}/dataset/{pub.dataset['name']}/resource/{nb['id']}/report"
    chromium.get(page)
    rows = chromium.find_elements("css selector", "table.jupyternotebook-runs tbody tr")
    assert [r.get_attribute("data-status") for r in rows][:3] == [
        "failed", "succeeded", "succeeded"]
    chromium.execute_script("arguments[0].open = true", chromium.find_element(
        "css selector", "details.jupyternotebook-run-error"))
    shot = ROOT / SCREENSHOT if SCREENSHOT else tmp_path / "reports-run-history.png"
    shot.parent.mkdir(exist_ok=True)
    chromium.set_window_size(1300, 2400)
    chromium.find_element("css selector", "section.jupyternotebook-report-history").screenshot(
        str(shot))
    assert shot.stat().st_size > 10_000
    pub.api.jupyternotebook_report_delete(id=report["id"])


def test_a_notebook_past_its_time_limit_is_timed_out_and_leaves_nothing(
        portal, bridge, report_processes, tmp_path):
    pub = Publisher(portal)
    nb = pub.upload("slow.ipynb", SLEEPING, "ipynb", tmp_path)
    report = pub.api.jupyternotebook_report_create(resource_id=nb["id"], time_limit=10)
    run = pub.api.jupyternotebook_report_execute(id=report["id"])
    ended = pub.wait_for_runs(report, 1, timeout=200)[0]
    assert ended["id"] == run["id"]
    assert ended["status"] == "timed_out", ended
    assert "10 s" in ended["error"]["message"] or "time limit" in ended["error"]["message"]
    assert ended["published"] == [] and pub.published() == {}
    # the worker removed the bridge's run: nothing of it is left
    assert wait_until(lambda: bridge.call("GET", f"/api/runs/{run['id']}").status_code == 404,
                      timeout=30)
    assert wait_until(lambda: nothing_left(portal.stack), timeout=30), run_processes(portal.stack)


def test_a_new_csv_runs_a_report_that_runs_on_data_change_and_its_results_do_not(
        portal, bridge, report_processes, tmp_path):
    pub = Publisher(portal)
    pub.upload("weather.csv", CSV, "CSV", tmp_path)
    nb = pub.upload("weekly.ipynb", REPORT, "ipynb", tmp_path)
    report = pub.api.jupyternotebook_report_create(resource_id=nb["id"], on_data_change=True,
                                                   parameters={"year": 2040})
    assert pub.runs(report) == []
    pub.upload("more.csv", b"station,temp\nC,9.0\n", "CSV", tmp_path)
    done = pub.wait_for_runs(report, 1, timeout=120)[0]
    assert done["trigger"] == "data_change"
    assert done["status"] == "succeeded", done
    assert set(pub.published()) == {"", "summary.csv"}
    # its own uploads (two resources created) queued nothing more
    assert holds_throughout(lambda: len(pub.runs(report)) == 1, seconds=5, step=0.5)


def test_cancel_on_the_report_page_stops_a_running_run(
        portal, bridge, report_processes, tmp_path):
    pub = Publisher(portal)
    nb = pub.upload("slow.ipynb", SLEEPING, "ipynb", tmp_path)
    browser = login(portal, pub.name)
    page = browser.get(f"{portal.url}/dataset/{pub.dataset['name']}/resource/{nb['id']}/report")
    assert page.status_code == 200
    assert "Set up as report" in page.text
    bad = browser.submit(page, r"/report$", {"schedule": "every monday", "time_limit": "300"})
    assert bad.status_code == 400
    assert "A schedule has five fields" in bad.text
    saved = browser.submit(page, r"/report$", {"schedule": "", "time_limit": "300"})
    assert "The notebook is set up as a report" in saved.text
    queued = browser.submit(saved, r"/report/run$")
    assert "The report run is queued" in queued.text
    report = pub.api.jupyternotebook_report_list(dataset_id=pub.dataset["id"])[0]
    assert wait_until(lambda: pub.runs(report)[0]["status"] == "running", timeout=60, step=0.5)
    assert wait_until(lambda: len(run_processes(portal.stack)) >= 2, timeout=90)
    run = pub.runs(report)[0]

    running = browser.get(page.url)
    forged = browser.http.post(f"{page.url}/runs/{run['id']}/cancel", allow_redirects=False,
                               timeout=60)
    assert forged.status_code in (400, 403)
    assert pub.runs(report)[0]["status"] == "running"

    cancelled = browser.submit(running, rf"/runs/{run['id']}/cancel$")
    assert "The run is cancelled" in cancelled.text
    shown = pub.api.jupyternotebook_report_run_show(id=run["id"])
    assert shown["status"] == "cancelled"
    assert f"Cancelled by {pub.name}" in shown["error"]["message"]
    assert wait_until(lambda: nothing_left(portal.stack), timeout=60), run_processes(portal.stack)
    assert pub.published() == {}


def test_a_publisher_who_lost_access_stops_the_run_with_a_clear_error(
        portal, bridge, report_processes, tmp_path):
    pub = Publisher(portal, private=True)
    nb = pub.upload("weekly.ipynb", REPORT, "ipynb", tmp_path)
    report = pub.api.jupyternotebook_report_create(resource_id=nb["id"])
    portal.sysadmin.action.organization_member_delete(id=pub.org["id"], username=pub.name)
    run = portal.sysadmin.action.jupyternotebook_report_execute(id=report["id"])
    ended = wait_until(lambda: portal.sysadmin.action.jupyternotebook_report_run_show(
        id=run["id"])["status"] == "failed", timeout=60, step=0.5)
    shown = portal.sysadmin.action.jupyternotebook_report_run_show(id=run["id"])
    assert ended, shown
    assert f"publisher {pub.name} may no longer read this notebook" in shown["error"]["message"]
    assert shown["published"] == []
