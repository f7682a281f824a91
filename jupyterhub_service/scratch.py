"""Session directories: a fresh home and a read-only ``data`` directory per
session (or pool slot) under ``<storage root>/sessions/<id>``, filled from the
shared download cache, and removed when the session ends.

Local spawner: the home is ``<dir>/home`` owned by a uid of the session's
own (``session_home``), with ``~/data`` inside it; root writes into it only
through ``session_home``, which never follows what the session planted. Container spawners: ``<dir>/data`` is bind-mounted
read-only at ``~/data`` and ``<dir>/home`` seeds the container's own home.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

from . import start_here
from .preload import ResourceCache, ResourceSpec, populate_data_dir
from .session_home import give_home_a_uid, home_uid, kill_processes_of, write_file
from .settings import Settings, parse_bytes
from .workspaces import unmount_all_under


class Scratch:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.local = settings.spawner == "local"
        root = settings.storage_root
        self.root = root / "sessions"
        for d in (root, self.root):
            d.mkdir(parents=True, exist_ok=True)
            os.chmod(d, 0o711)
        self.cache = ResourceCache(
            root / "cache",
            max_bytes=parse_bytes(settings.cache_size),
            max_resource_size=parse_bytes(settings.max_resource_size),
            download_timeout=settings.download_timeout,
            fetch_allowlist=settings.allowlist,
        )

    def path(self, session_id: str) -> Path:
        return self.root / session_id

    def session_ids(self) -> set[str]:
        """Every session directory on disk, owned by a record or not."""
        try:
            return {p.name for p in self.root.iterdir() if p.is_dir()}
        except FileNotFoundError:
            return set()

    def _layout(self, session_id: str, home_mode: int) -> tuple[Path, Path]:
        sdir = self.path(session_id)
        sdir.mkdir(mode=0o711, exist_ok=True)
        home = sdir / "home"
        home.mkdir(mode=home_mode, exist_ok=True)
        data_dir = home / "data" if self.local else sdir / "data"
        return home, data_dir

    @staticmethod
    def _options(home: Path, data_dir: Path) -> dict:
        return {"data_dir": str(data_dir), "home_dir": str(home), "home_seed_dir": str(home)}

    def prepare_slot(self, slot_id: str) -> dict:
        """An empty session directory for a pool server: a home of its own
        and an empty, read-only ~/data to be filled at claim. Blocking."""
        home, data_dir = self._layout(slot_id, 0o700 if self.local else 0o755)
        data_dir.mkdir(exist_ok=True)
        os.chmod(data_dir, 0o555)
        if self.local:
            give_home_a_uid(home, self.root)
        return self._options(home, data_dir)

    async def prepare(self, session_id: str, dataset: dict, resources: list[dict],
                      notebook_resource_id: str | None) -> dict:
        """Download (or reuse) the dataset's files and lay out the session's
        home and data directory. Returns the spawner's user_options paths,
        the cache keys in use, the notebooks and the file to open."""
        specs = [ResourceSpec.from_dict(r) for r in resources]
        fetched = await self.cache.fetch_all(specs, dataset_id=dataset["id"])
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            None, self._lay_out, session_id, dataset, fetched, notebook_resource_id)

    def _lay_out(self, session_id, dataset, fetched, notebook_resource_id) -> dict:
        """The blocking part of ``prepare``: copies of notebooks (up to the
        resource size limit) and JSON writes, run on a worker thread."""
        home, data_dir = self._layout(session_id, 0o700)
        uid = give_home_a_uid(home, self.root) if self.local else None
        populate_data_dir(fetched, data_dir)
        files = [
            {"filename": f.filename, "format": f.resource.format, "name": f.resource.name,
             "error": f.error}
            for f in fetched
        ]
        # staged where the session cannot reach, then created afresh in the home
        staged = self.path(session_id) / ".start_here.ipynb"
        start_here.write_notebook(start_here.build_start_here(dataset, files), staged)
        write_file(home, "start_here.ipynb", source=staged, owner=uid)
        staged.unlink()
        notebooks = []
        for f in fetched:
            if f.path and f.filename and f.filename.lower().endswith(".ipynb"):
                # a v3 or repairable notebook opens as the valid v4 copy the
                # preview showed; a valid one is copied byte for byte
                # imported here: nbformat (jsonschema's format checkers) costs
                # seconds of CPU, and the hub gives the bridge ~10 s to answer
                from .notebook_upgrade import upgraded_file
                upgraded = upgraded_file(f.path)
                write_file(home, f.filename, data=upgraded,
                           source=f.path if upgraded is None else None, owner=uid)
                notebooks.append({"resource_id": f.resource.id, "filename": f.filename})
        if not self.local:
            for p in home.iterdir():
                if not p.is_symlink():
                    os.chmod(p, 0o644)
            os.chmod(home, 0o755)
        open_path = next((n["filename"] for n in notebooks
                          if n["resource_id"] == notebook_resource_id), "start_here.ipynb")
        return {
            **self._options(home, data_dir),
            "cache_keys": [f.cache_key for f in fetched if f.cache_key],
            "notebooks": notebooks,
            "open_path": open_path,
        }

    async def remove(self, session_id: str) -> None:
        await asyncio.get_running_loop().run_in_executor(None, remove_tree, self.path(session_id))

    async def evict_cache(self, keep: set[str]) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.cache.evict, keep)


def remove_tree(path: Path) -> None:
    """Remove a session directory the session user may have made unwritable
    (chmod 0 on its own files); symlinks are removed, never followed."""
    if not path.exists():
        return
    unmount_all_under(path)  # a workspace is never walked into
    uid = home_uid(path / "home")
    if uid is not None:
        kill_processes_of(uid)  # nothing the session left running survives it
    for p in [path, *path.rglob("*")]:
        try:
            if p.is_dir() and not p.is_symlink():
                os.chmod(p, 0o700)
        except OSError:
            pass
    shutil.rmtree(path, ignore_errors=True)
