"""Notebooks and requests for the report-run tests (local and docker)."""

from __future__ import annotations

import json
import time
import uuid

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

CSV = b"station,temp\nA,12.5\nB,13.1\n"


def notebook_bytes(*cells, parameters: str | None = None) -> bytes:
    """A v4 notebook: an optional ``parameters``-tagged cell, then ``cells``
    (strings are code cells)."""
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    if parameters is not None:
        nb.cells.append(new_code_cell(parameters, metadata={"tags": ["parameters"]}))
    for cell in cells:
        nb.cells.append(new_code_cell(cell) if isinstance(cell, str) else cell)
    return nbformat.writes(nb).encode()


# papermill's parameters cell and a Colab form field, both used
PARAMETERIZED = notebook_bytes(
    new_markdown_cell("# Weather report"),
    "region = 'north'  # @param ['north', 'south']",
    "import pandas as pd, os\n"
    "df = pd.read_csv('data/Weather.csv')\n"
    "df['year'] = year\n"
    "df['region'] = region\n"
    "df.to_csv('output/result.csv', index=False)\n"
    "print(f'report for {year} in {region}: {len(df)} rows')",
    parameters="year = 2000",
)

FAILING = notebook_bytes("x = 1", "print('before')", "1 / 0", "print('never')")

SLEEPING = notebook_bytes("open('output/started.txt', 'w').write('started')",
                          "import time\ntime.sleep(600)")


def run_request(files, notebook_path: str, *, run_id: str | None = None,
                parameters: dict | None = None, time_limit: int = 300,
                fetch_host: str = "127.0.0.1") -> dict:
    """A POST /api/runs body for a dataset of a CSV and a notebook that
    ``files`` (a FileServer) serves."""
    nb_id = "nb-" + uuid.uuid4().hex[:8]
    return {
        "run_id": run_id or "run-" + uuid.uuid4().hex,
        "user": {"kind": "user", "id": "publisher-1", "name": "publisher"},
        "dataset": {"id": "ds-report", "name": "ds-report", "title": "Report data",
                    "url": "http://127.0.0.1:5050/dataset/ds-report"},
        "resources": [
            {"id": "res-weather", "name": "Weather", "format": "CSV", "hash": "rw1",
             "fetch_url": files.url("/weather.csv", host=fetch_host), "source": "ckan"},
            {"id": nb_id, "name": "report.ipynb", "format": "ipynb",
             "hash": uuid.uuid4().hex,
             "fetch_url": files.url(notebook_path, host=fetch_host), "source": "ckan"},
        ],
        "notebook_resource_id": nb_id,
        "parameters": parameters or {},
        "time_limit": time_limit,
    }


def wait_ended(bridge, run_id: str, timeout: float = 180) -> dict:
    """The run's state once it is no longer running and the bridge says
    its server, user and home are removed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = bridge.call("GET", f"/api/runs/{run_id}").json()
        if run.get("status") != "running" and run.get("cleaned"):
            return run
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} still running after {timeout} s")


def outputs_text(notebook: dict) -> str:
    return "".join(out.get("text", "") if isinstance(out.get("text", ""), str)
                   else "".join(out["text"])
                   for cell in notebook["cells"] if cell["cell_type"] == "code"
                   for out in cell.get("outputs", []))


def load(data: bytes) -> dict:
    return json.loads(data)
