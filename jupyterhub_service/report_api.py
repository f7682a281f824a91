"""The bridge's routes for report runs (``report_runs``): start one, read
its state, its executed notebook and its artifacts, cancel or forget it."""

from __future__ import annotations

from urllib.parse import quote

from .bridge import APIHandler
from .errors import BridgeError
from .report_runs import ReportRuns

CHUNK = 1 << 20


class RunsHandlerBase(APIHandler):
    @property
    def runs(self) -> ReportRuns:
        return self.application.settings["report_runs"]

    async def send_file(self, path, content_type: str, filename: str) -> None:
        self.set_header("Content-Type", content_type)
        self.set_header("Content-Disposition", f"attachment; filename*=UTF-8''{quote(filename)}")
        try:
            f = open(path, "rb")
        except FileNotFoundError:
            raise BridgeError(404, "not_found", "The file is gone.") from None
        with f:
            while True:
                chunk = f.read(CHUNK)
                if not chunk:
                    break
                self.write(chunk)
                await self.flush()
        self.finish()


class RunsHandler(RunsHandlerBase):
    async def post(self):
        async def run():
            rec, status = await self.runs.create(self.body())
            self.send(rec, status)

        await self._guard(run())


class RunHandler(RunsHandlerBase):
    async def get(self, run_id):
        async def run():
            self.send((await self.runs.get(run_id)).to_dict())

        await self._guard(run())

    async def delete(self, run_id):
        async def run():
            await self.runs.delete(run_id)
            self.set_status(204)
            self.finish()

        await self._guard(run())


class RunNotebookHandler(RunsHandlerBase):
    async def get(self, run_id):
        async def run():
            path = await self.runs.notebook_path(run_id)
            await self.send_file(path, "application/x-ipynb+json", "notebook.ipynb")

        await self._guard(run())


class RunArtifactHandler(RunsHandlerBase):
    async def get(self, run_id, name):
        async def run():
            path = await self.runs.artifact_path(run_id, name)
            await self.send_file(path, "application/octet-stream", name)

        await self._guard(run())


ROUTES = [
    (r"/api/runs", RunsHandler),
    (r"/api/runs/([^/]+)", RunHandler),
    (r"/api/runs/([^/]+)/notebook", RunNotebookHandler),
    (r"/api/runs/([^/]+)/artifacts/([^/]+)", RunArtifactHandler),
]
