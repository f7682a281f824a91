"""What a report run costs on top of the notebook's own run time.

For the local and the docker spawner, a hub + bridge of its own (no CKAN)
runs the same small parameterized notebook ``--runs`` times through
``POST /api/runs``, polling ``GET /api/runs/{id}`` every 0.1 s and fetching
the executed notebook and its artifact, as CKAN's worker does. Next to it,
the same notebook run by hand with papermill on the host.

- *own time*: the sum of the cells' execution times papermill records in
  the executed notebook (``metadata.papermill.duration`` of each cell);
- *overhead*: wall time (POST to results fetched; by hand: the papermill
  command) minus own time: the server start, the kernel start, the result
  collection, and for the bridge the teardown it starts right after.

Usage: .venv/bin/python benchmarks/report_overhead.py [--runs 5] [--no-docker]
Writes benchmarks/results/report-overhead-<date>.json and prints a table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the dev package

from dev.stack import Stack  # noqa: E402
from dev.testing import Bridge  # noqa: E402
from stacks import remove_network  # noqa: E402

from jupyterhub_service.tests.fileserver import FileServer, Route  # noqa: E402
from jupyterhub_service.tests.report_notebooks import (  # noqa: E402
    CSV,
    notebook_bytes,
    run_request,
)

TOKEN = "bench-report-token"
BENCH_DIR = ROOT / ".bench-stack" / "reports"
# one second of work, a parameter, an artifact
NOTEBOOK = notebook_bytes(
    "import time, pandas as pd\ntime.sleep(1)",
    "df = pd.read_csv('data/Weather.csv')\ndf['year'] = year\n"
    "df.to_csv('output/result.csv', index=False)\nprint(year, len(df))",
    parameters="year = 2000",
)


def own_time(notebook: dict) -> float:
    return sum(float((c.get("metadata", {}).get("papermill") or {}).get("duration") or 0)
               for c in notebook["cells"])


def by_hand(runs: int) -> list[dict]:
    """papermill's command on the host, in a directory laid out as a
    session's home (the notebook, data/, output/)."""
    samples = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as d:
            home = Path(d)
            (home / "data").mkdir()
            (home / "output").mkdir()
            (home / "data" / "Weather.csv").write_bytes(CSV)
            (home / "report.ipynb").write_bytes(NOTEBOOK)
            t0 = time.monotonic()
            subprocess.run([sys.executable, "-m", "papermill", "report.ipynb", "out.ipynb",
                            "-p", "year", "2024", "-k", "python3", "--no-progress-bar"],
                           cwd=home, check=True, capture_output=True)
            wall = time.monotonic() - t0
            own = own_time(json.loads((home / "out.ipynb").read_text()))
            samples.append({"wall": wall, "own": own, "overhead": wall - own})
    return samples


def through_bridge(bridge: Bridge, files: FileServer, runs: int) -> list[dict]:
    samples = []
    for i in range(runs):
        body = run_request(files, "/report.ipynb", parameters={"year": 2024 + i},
                           time_limit=300)
        t0 = time.monotonic()
        resp = bridge.call("POST", "/api/runs", json=body)
        resp.raise_for_status()
        while True:
            run = bridge.call("GET", f"/api/runs/{body['run_id']}").json()
            if run["status"] != "running":
                break
            time.sleep(0.1)
        if run["status"] != "succeeded":
            raise SystemExit(f"run failed: {run}")
        notebook = bridge.call("GET", f"/api/runs/{body['run_id']}/notebook").json()
        for art in run["artifacts"]:
            bridge.call("GET", f"/api/runs/{body['run_id']}/artifacts/{art['name']}").content
        wall = time.monotonic() - t0
        own = own_time(notebook)
        # the worker's DELETE, once it has the results (not part of the wait)
        t1 = time.monotonic()
        assert bridge.call("DELETE", f"/api/runs/{body['run_id']}").status_code == 204
        samples.append({"wall": wall, "own": own, "overhead": wall - own,
                        "delete": time.monotonic() - t1})
    return samples


def stack_for(kind: str, index: int) -> Stack:
    env = {"CKAN_JUPYTERHUB_GUEST_RATE": "1000"}
    if kind == "docker":
        env.update({"CKAN_JUPYTERHUB_SPAWNER": "docker",
                    "JUPYTERNOTEBOOK_SESSIONS_NETWORK": f"jn-bench-reports-{uuid.uuid4().hex[:6]}"})
    base = 8115 + 10 * index
    return Stack(directory=BENCH_DIR / kind, hub_port=base, bridge_port=base - 2000,
                 hub_api_port=base + 1, proxy_api_port=base + 2, solr_port=0,
                 api_token=TOKEN, extra_env=env)


def measure(kind: str, index: int, runs: int, files: FileServer) -> list[dict]:
    stack = stack_for(kind, index)
    stack.stop()
    for stale in ("storage", "hub", "logs"):
        shutil.rmtree(stack.directory / stale, ignore_errors=True)
    stack.prepare()
    try:
        try:
            stack.start_hub(JUPYTERNOTEBOOK_REAPER_INTERVAL="1")
        except RuntimeError:
            # on a loaded machine the bridge may take longer to import than
            # the 10 s the hub gives a managed service: once more
            stack.stop()
            stack.start_hub(JUPYTERNOTEBOOK_REAPER_INTERVAL="1")
        bridge = Bridge(stack.bridge_url, TOKEN)
        through_bridge(bridge, files, 1)  # warm-up: the image, the download cache
        return through_bridge(bridge, files, runs)
    finally:
        stack.stop()
        if kind == "docker":
            remove_network(stack.extra_env["JUPYTERNOTEBOOK_SESSIONS_NETWORK"])


def docker_ready() -> bool:
    try:
        return subprocess.run(
            ["docker", "run", "--rm", "--entrypoint", "python3",
             "ckanext-jupyternotebook/singleuser:latest", "-c", "import papermill"],
            capture_output=True, timeout=120).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def summary(samples: list[dict]) -> dict:
    def med(key):
        return round(statistics.median(s[key] for s in samples), 3)

    return {"n": len(samples), "wall_p50": med("wall"), "own_p50": med("own"),
            "overhead_p50": med("overhead"),
            "overhead_max": round(max(s["overhead"] for s in samples), 3)}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--no-docker", action="store_true")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("run as root: local sessions run as uids of their own")
    files = FileServer().start()
    files.routes["/weather.csv"] = Route(body=CSV)
    files.routes["/report.ipynb"] = Route(body=NOTEBOOK)
    results = {"by_hand": by_hand(args.runs)}
    try:
        results["local"] = measure("local", 0, args.runs, files)
        if not args.no_docker and docker_ready():
            results["docker"] = measure("docker", 1, args.runs, files)
    finally:
        files.stop()
    table = {k: summary(v) for k, v in results.items()}
    print(f"{'':10} {'n':>3} {'wall p50':>9} {'own p50':>8} {'overhead p50':>13} {'max':>6}")
    for k, s in table.items():
        print(f"{k:10} {s['n']:>3} {s['wall_p50']:>9.2f} {s['own_p50']:>8.2f} "
              f"{s['overhead_p50']:>13.2f} {s['overhead_max']:>6.2f}")
    out = ROOT / "benchmarks" / "results" / (
        "report-overhead-" + dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d-%H%M") + ".json")
    out.write_text(json.dumps({"summary": table, "samples": results,
                               "cpus": os.cpu_count()}, indent=1))
    print("wrote", out.relative_to(ROOT))


if __name__ == "__main__":
    main()
