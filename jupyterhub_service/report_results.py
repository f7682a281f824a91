"""A report run's results: the directory the bridge keeps them in, and the
run's outcome read from what papermill left (``report_exec``).

Each run has a directory of its own under ``<storage_root>/report-runs``
(the bridge's, mode 0700): the executed notebook and ``artifacts/``, copied
out of the run's session when papermill ends, and served from here until
CKAN's worker (or the housekeeping) forgets the run.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

from .errors import BridgeError
from .report_exec import NOTEBOOK_FILE, Collected, safe_artifact_name
from .settings import parse_bytes

# a run's status until it ends, then one of ENDED
RUNNING = "running"
ENDED = ("succeeded", "failed", "timed_out", "cancelled")


def run_error(ename: str, evalue: str) -> dict:
    """A run's ``error`` for a failure that has no traceback of its own."""
    return {"ename": ename, "evalue": evalue, "traceback": [], "cell_index": None}


def outcome(got: Collected) -> tuple[str, dict]:
    """The status a finished run ends in, and the values its record gets."""
    result = got.result if isinstance(got.result, dict) else None
    if result is None:
        return "failed", {
            "artifacts": got.artifacts, "message": "papermill ended without a result",
            "error": run_error("ReportRunError",
                               "papermill ended without a result (the kernel or the "
                               "runner was killed, or the session ran out of memory)")}
    if result.get("status") == "succeeded":
        return "succeeded", {
            "artifacts": got.artifacts, "error": None,
            "message": "" if got.notebook else "the executed notebook is too large"}
    error = result.get("error") if isinstance(result.get("error"), dict) else {}
    return "failed", {
        "artifacts": got.artifacts, "message": "the notebook failed",
        "error": {"ename": str(error.get("ename") or "Error"),
                  "evalue": str(error.get("evalue") or ""),
                  "traceback": [str(t) for t in error.get("traceback") or []][:200],
                  "cell_index": error.get("cell_index")
                  if isinstance(error.get("cell_index"), int) else None}}


class RunResults:
    def __init__(self, settings, runner):
        self.settings = settings
        self.runner = runner
        self.root = settings.storage_root / "report-runs"
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)

    def path(self, run_id: str) -> Path:
        return self.root / run_id

    def cap(self) -> int:
        return parse_bytes(self.settings.max_resource_size)

    async def collect(self, rec) -> tuple[str, dict]:
        """Copy out what the run left, into a fresh directory; its
        ``outcome``."""
        dest = self.path(rec.id)
        await asyncio.get_running_loop().run_in_executor(None, _fresh_dir, dest)
        return outcome(await self.runner.collect(rec, dest, self.cap()))

    def notebook(self, rec) -> Path:
        """The executed notebook of a run that ended, or 404."""
        path = self.path(rec.id) / NOTEBOOK_FILE
        if rec.status == RUNNING or not path.is_file():
            raise BridgeError(404, "not_found", "The run has no executed notebook (yet).")
        return path

    def artifact(self, rec, name: str) -> Path:
        """One of the artifacts the run's record lists, or 404."""
        listed = {a["name"] for a in rec.artifacts or [] if not a.get("skipped")}
        if not safe_artifact_name(name) or name not in listed:
            raise BridgeError(404, "not_found", "The run has no such artifact.")
        return self.path(rec.id) / "artifacts" / name

    async def remove(self, run_id: str) -> None:
        await asyncio.get_running_loop().run_in_executor(
            None, shutil.rmtree, self.path(run_id), True)


def _fresh_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(mode=0o700, parents=True)
