"""A succeeded report run's results published on its dataset, as the
report's publisher: the executed notebook and each artifact become
resources of the dataset, and new uploads of the same resources on later
runs (found by the report's id and the artifact's name). Everything is
fetched from the bridge before anything is published."""
from __future__ import annotations

import logging
import mimetypes
import tempfile
from pathlib import PurePosixPath

import ckan.plugins.toolkit as tk

from .. import hub_client
from .history import RunFailed
from .model import utcnow

log = logging.getLogger(__name__)

ORIGIN = "jupyternotebook_origin"
REPORT_ID = "jupyternotebook_report_id"
ARTIFACT = "jupyternotebook_artifact"
NOTEBOOK_ARTIFACT = ""


def report_stem(notebook: dict) -> str:
    """The notebook's name without ``.ipynb``: the published names' stem."""
    name = (notebook.get("name") or "").strip() or notebook["id"]
    if name.lower().endswith(".ipynb"):
        name = name[:-len(".ipynb")]
    return name or notebook["id"]


class Publication:
    """One run's results, published with the publisher's ``context``.
    ``stem`` is the notebook's as the run started (``report_stem``)."""

    def __init__(self, client: hub_client.HubClient, run_id: str,
                 report_id: str, stem: str, context: dict, dataset: dict,
                 notebook: dict):
        self.client = client
        self.run_id = run_id
        self.report_id = report_id
        self.stem = stem
        self.context = context
        self.dataset = dataset
        self.notebook = notebook

    def publish(self, final: dict) -> list[str]:
        """The ids of the resources published for the bridge's ``final``
        state of the run; RunFailed when its notebook cannot be fetched."""
        cap = int(tk.config.get("ckan.max_resource_size") or 0) * 1024 * 1024
        cap = cap or 2 ** 40
        existing = {
            r.get(ARTIFACT, ""): r for r in self.dataset.get("resources", [])
            if r.get(REPORT_ID) == self.report_id}
        published = []
        with tempfile.TemporaryDirectory(prefix="jupyter-report-") as tmp:
            downloaded = self._download(self._files(final), tmp, cap)
            # everything is fetched before anything is published
            for key, filename, path in downloaded:
                published.append(self._upload(existing.get(key), key,
                                              filename, path))
        return published

    def _files(self, final: dict) -> list[tuple[str, str, str]]:
        """(artifact key, bridge file, file name) of what to publish."""
        files = [(NOTEBOOK_ARTIFACT, "notebook", f"{self.stem}-report.ipynb")]
        for artifact in final.get("artifacts") or []:
            name = str(artifact.get("name") or "")
            if artifact.get("skipped") or not _safe_name(name):
                log.warning("report run %s: artifact %r not published "
                            "(%s)", self.run_id, name,
                            artifact.get("skipped") or "bad name")
                continue
            files.append((name, f"artifacts/{name}", name))
        return files

    def _download(self, files: list[tuple[str, str, str]], tmp: str,
                  cap: int) -> list[tuple[str, str, str]]:
        """(artifact key, file name, local path) of each file fetched; an
        artifact the bridge does not hand over is skipped, the notebook
        is needed."""
        downloaded = []
        for key, what, filename in files:
            path = PurePosixPath(tmp) / f"{len(downloaded)}"
            with open(path, "wb") as out:
                try:
                    self.client.download_run_file(self.run_id, what, out, cap)
                except hub_client.BridgeError as err:
                    if key == NOTEBOOK_ARTIFACT:
                        raise RunFailed(tk._(
                            "The executed notebook could not be fetched: "
                            "{error}").format(error=err.message))
                    log.warning("report run %s: artifact %s skipped: %s",
                                self.run_id, key, err)
                    continue
            downloaded.append((key, filename, str(path)))
        return downloaded

    def _upload(self, current: dict | None, key: str, filename: str,
                path: str) -> str:
        from werkzeug.datastructures import FileStorage

        is_notebook = key == NOTEBOOK_ARTIFACT
        mimetype = "application/x-ipynb+json" if is_notebook else (
            mimetypes.guess_type(filename)[0] or "application/octet-stream")
        fmt = "ipynb" if is_notebook else (
            PurePosixPath(filename).suffix.lstrip(".").upper() or "")
        name, description = self._describe(key, is_notebook)
        with open(path, "rb") as stream:
            upload = FileStorage(stream=stream, filename=filename,
                                 content_type=mimetype)
            fields = {
                "name": name, "description": description, "format": fmt,
                "url": filename, "upload": upload, "url_type": "upload",
                ORIGIN: "report", REPORT_ID: self.report_id, ARTIFACT: key,
            }
            if current is None:
                resource = tk.get_action("resource_create")(
                    dict(self.context),
                    {"package_id": self.dataset["id"], **fields})
            else:
                resource = tk.get_action("resource_patch")(
                    dict(self.context), {"id": current["id"], **fields})
        if is_notebook:
            _ensure_notebook_view(self.context, resource)
        return resource["id"]

    def _describe(self, key: str, is_notebook: bool) -> tuple[str, str]:
        """The published resource's name and description."""
        when = utcnow().strftime("%Y-%m-%d %H:%M UTC")
        if is_notebook:
            name = tk._("{report} (report)").format(report=self.stem)
            description = tk._(
                "The notebook {notebook} as its report last ran ({when}), "
                "with its outputs.").format(notebook=self.notebook.get("name"),
                                            when=when)
        else:
            name = tk._("{report} (report): {file}").format(
                report=self.stem, file=key)
            description = tk._(
                "Written by the report of {notebook} ({when}).").format(
                    notebook=self.notebook.get("name"), when=when)
        return name, description


def _safe_name(name: str) -> bool:
    return bool(name) and "/" not in name and "\\" not in name \
        and not name.startswith(".") and len(name) <= 200


def _ensure_notebook_view(context: dict, resource: dict) -> None:
    from ..notebook_view import VIEW_NAME

    views = tk.get_action("resource_view_list")(
        dict(context), {"id": resource["id"]})
    if any(v.get("view_type") == VIEW_NAME for v in views):
        return
    tk.get_action("resource_view_create")(dict(context), {
        "resource_id": resource["id"], "view_type": VIEW_NAME,
        "title": tk._("Report")})
