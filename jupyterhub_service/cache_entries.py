"""The preload cache on disk: its entries, kept least recently used first
out, and which of them a fetch is working on.

``ResourceCache`` (``preload``) decides what to download and under which
key; this module only keeps the files. Layout under ``root`` (mode 0700, so
sessions cannot browse it)::

    entries/<digest>        the file, mode 0444
    entries/<digest>.json   its key, size, dataset and last use (LRU)
    links/<digest>.json     validators of a response-keyed resource
    tmp/                    downloads in progress, renamed into entries/

A fetch holds its key (or link name) through ``claim()``: one fetch of a
name at a time, and ``evict`` and ``clear`` leave alone every entry of a
resource being fetched, so no file goes while a fetch may still hand it out.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
import uuid
from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator
from urllib.parse import urlsplit


def digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:40]


def _url_without_query(url: str) -> str:
    # The query of a CKAN fetch URL holds a grant; it does not belong on disk.
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    tmp.write_text(json.dumps(data, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


class CacheEntries:
    """The cache's files under ``root``, evicted least recently used first."""

    def __init__(self, root: Path, *, max_bytes: int, download_timeout: float) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes
        self._entries = self.root / "entries"
        self._links = self.root / "links"
        self.tmp_dir = self.root / "tmp"
        for d in (self.root, self._entries, self._links, self.tmp_dir):
            d.mkdir(parents=True, exist_ok=True)
            os.chmod(d, 0o700)
        self._drop_stale_tmp(download_timeout)
        self._locks: dict[str, list] = {}
        self._busy: set[str] = set()

    @asynccontextmanager
    async def claim(self, name: str) -> AsyncIterator[None]:
        """Hold ``name`` (a key or link name) for one fetch at a time."""
        async with _NamedLock(self._locks, name):
            self._busy.add(name)
            try:
                yield
            finally:
                self._busy.discard(name)

    def entry_path(self, key: str) -> Path:
        return self._entries / digest(key)

    def _meta_path(self, key: str) -> Path:
        return self._entries / f"{digest(key)}.json"

    def store(self, key: str, tmp_path: Path, size: int, *, resource_id: str,
              dataset_id: str | None, url: str) -> Path:
        """Move a finished download from ``tmp_dir`` into the cache as ``key``."""
        path = self.entry_path(key)
        os.chmod(tmp_path, 0o444)
        os.replace(tmp_path, path)
        now = time.time_ns()
        _write_json(self._meta_path(key), {
            "key": key,
            "resource_id": resource_id,
            "dataset_id": dataset_id,
            "url": _url_without_query(url),
            "size": size,
            "created": now,
            "last_used": now,
        })
        return path

    def touch(self, key: str) -> bool:
        """Mark an entry as just used; False when it is not in the cache."""
        meta_path = self._meta_path(key)
        meta = _read_json(meta_path)
        if meta is None or not self.entry_path(key).exists():
            return False
        meta["last_used"] = time.time_ns()
        _write_json(meta_path, meta)
        return True

    def link(self, name: str) -> dict:
        """The key and validators last stored for a link name, or ``{}``."""
        return _read_json(self._link_path(name)) or {}

    def set_link(self, name: str, link: dict) -> None:
        _write_json(self._link_path(name), link)

    def _link_path(self, name: str) -> Path:
        return self._links / f"{digest(name)}.json"

    def entries(self) -> list[dict]:
        """Every cache entry's metadata, with its ``path``."""
        found = []
        for meta_path in self._entries.glob("*.json"):
            meta = _read_json(meta_path)
            data_path = meta_path.with_suffix("")
            if meta is None or not data_path.exists():
                continue
            meta["path"] = str(data_path)
            found.append(meta)
        return found

    def total_bytes(self) -> int:
        return sum(e.get("size", 0) for e in self.entries())

    def evict(self, keep: set[str]) -> int:
        """Drop least recently used entries not in ``keep`` until under max_bytes."""
        entries = sorted(self.entries(), key=lambda e: (e.get("last_used", 0), e["key"]))
        total = sum(e.get("size", 0) for e in entries)
        freed = 0
        for entry in entries:
            if total <= self.max_bytes:
                break
            if entry["key"] in keep or self._is_busy(entry["key"]):
                continue
            self._remove(entry)
            total -= entry.get("size", 0)
            freed += entry.get("size", 0)
        return freed

    def clear(self, keep: set[str], dataset_id: str | None = None) -> int:
        """Remove every entry (of one dataset, if given) not in ``keep``."""
        freed = 0
        for entry in self.entries():
            if entry["key"] in keep or self._is_busy(entry["key"]):
                continue
            if dataset_id is not None and entry.get("dataset_id") != dataset_id:
                continue
            self._remove(entry)
            freed += entry.get("size", 0)
        for link_path in self._links.glob("*.json"):
            link = _read_json(link_path) or {}
            if not link.get("key") or not self.entry_path(link["key"]).exists():
                link_path.unlink(missing_ok=True)
        return freed

    def _is_busy(self, key: str) -> bool:
        resource_id = key.split("|", 1)[0]
        return key in self._busy or any(b.startswith(f"{resource_id}|") for b in self._busy)

    def _remove(self, entry: dict) -> None:
        # Sessions holding a hard link keep their file; only the cache's name goes.
        self.entry_path(entry["key"]).unlink(missing_ok=True)
        self._meta_path(entry["key"]).unlink(missing_ok=True)

    def _drop_stale_tmp(self, download_timeout: float) -> None:
        horizon = time.time() - 2 * download_timeout - 60
        for leftover in self.tmp_dir.iterdir():
            try:
                if leftover.stat().st_mtime < horizon:
                    leftover.unlink()
            except OSError:
                pass


class _NamedLock:
    """An asyncio lock per name, dropped when nobody holds or waits for it."""

    def __init__(self, registry: dict[str, list], name: str) -> None:
        self._registry = registry
        self._name = name

    async def __aenter__(self) -> None:
        slot = self._registry.setdefault(self._name, [asyncio.Lock(), 0])
        slot[1] += 1
        try:
            await slot[0].acquire()
        except BaseException:
            self._release_slot(slot)
            raise

    async def __aexit__(self, *exc) -> None:
        slot = self._registry[self._name]
        slot[0].release()
        self._release_slot(slot)

    def _release_slot(self, slot: list) -> None:
        slot[1] -= 1
        if slot[1] == 0:
            self._registry.pop(self._name, None)
