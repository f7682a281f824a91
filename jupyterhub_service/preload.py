"""Download a dataset's resources into a shared cache, and give each session
a read-only ``~/data`` holding only that dataset's files.

The bridge (async, running as root) uses it like this::

    cache = ResourceCache(root, max_bytes=..., max_resource_size=...,
                          download_timeout=..., fetch_allowlist=[...])
    specs = [ResourceSpec.from_dict(r) for r in request["resources"]]
    fetched = await cache.fetch_all(specs, dataset_id=dataset["id"])
    populate_data_dir(fetched, home / "data")
    cache.evict(keep=keys_of_live_sessions | {f.cache_key for f in fetched})

API
---
``ResourceSpec(id, name, format, fetch_url, source, size=None, hash=None,
last_modified=None, metadata_modified=None, dataset_id=None)``
    One resource of the session request. ``source`` is ``"ckan"`` for URLs
    CKAN built itself (trusted) and ``"external"`` for link resources, which
    pass the SSRF guard. ``ResourceSpec.from_dict(d, trusted_prefixes=())``
    takes ``source`` from the dict, else ``"ckan"`` when ``fetch_url`` starts
    with one of ``trusted_prefixes``, else ``"external"``.

``Fetched(resource, filename, cache_key, path, error, downloaded_bytes)``
    The outcome for one resource: ``path`` is the cache file, or ``None``
    with a human-readable ``error``. ``downloaded_bytes`` is 0 for a cache
    hit (including a 304 revalidation).

``ResourceCache(root, *, max_bytes, max_resource_size, download_timeout,
fetch_allowlist=(), concurrency=4, ca_bundle=None)``
    ``ca_bundle`` is a CA file for HTTPS (default: certifi's).
    ``await fetch_all(resources, *, dataset_id=None) -> list[Fetched]``
    never raises for one bad resource. ``evict(keep) -> int`` removes least
    recently used entries, never those whose key is in ``keep``, until the
    cache fits ``max_bytes``; returns the bytes freed. ``entries()``,
    ``total_bytes()`` and ``clear(keep, dataset_id=None) -> int`` are for
    cache management. ``close()`` stops the download threads.

``populate_data_dir(fetched, data_dir, *, readme=True)``
    Hard-links (or copies) each cached file into ``data_dir`` under its safe
    name, mode 0444, writes ``README.md`` listing the files and the failures
    with their reasons, and leaves the directory mode 0555.

``safe_filename(name, fmt, taken, *, fallback)`` and ``extension_for(fmt)``
    The file-naming rules, shared with ``start_here``.

Cache keys
----------
Resource id plus ``hash``, else plus ``last_modified``: such an entry is
reused without any request. Otherwise the key comes from the response's ETag
or Last-Modified, and the next launch revalidates it with a conditional GET
(a 304 reuses the entry), else from the resource's ``metadata_modified``.
A response with no validator and a resource without ``metadata_modified``
is not reusable and is downloaded every time.

The files under ``root``, their LRU and the per-key locking are
``cache_entries.CacheEntries``; its module docstring gives the layout.

Downloads run in a bounded thread pool through ``guarded_download`` (the
SSRF guard, the total deadline, the size caps), streamed to disk in
1 MiB chunks. For external URLs each hop (redirects are followed here, at
most five) is resolved once, every address is checked, and the connection
goes to the checked address while the Host header and TLS SNI keep the
host name, so DNS rebinding cannot slip a private address in between.
Redirects of ``"ckan"`` URLs are trusted like the URL itself.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import unicodedata
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable
from urllib.parse import unquote, urlsplit

from . import session_home
from .cache_entries import CacheEntries, digest
from .guarded_download import FetchError, GuardedDownloader, human_size

log = logging.getLogger(__name__)

README_NAME = "README.md"

# Extension for a resource format, so the file opens with the right reader.
_FORMAT_ALIASES = {
    "text/csv": "csv",
    "text/tab-separated-values": "tsv",
    "tab": "tsv",
    "application/json": "json",
    "application/geo+json": "geojson",
    "application/vnd.geo+json": "geojson",
    "application/vnd.ms-excel": "xls",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
    "application/x-ipynb+json": "ipynb",
    "application/vnd.apache.parquet": "parquet",
    "application/pdf": "pdf",
    "application/zip": "zip",
    "text/plain": "txt",
    "text/html": "html",
    "jupyter notebook": "ipynb",
    "notebook": "ipynb",
}


def extension_for(fmt: str | None) -> str | None:
    """The file extension for a CKAN resource format, or None."""
    fmt = (fmt or "").strip().lower().lstrip(".")
    fmt = _FORMAT_ALIASES.get(fmt, fmt)
    return fmt if re.fullmatch(r"[a-z0-9]{1,10}", fmt) else None


def safe_filename(name: str | None, fmt: str | None, taken: set[str], *, fallback: str) -> str:
    """A file name safe to create inside one directory, unique within ``taken``.

    No path separators, no leading dot, no control characters; the
    extension follows the format. ``taken`` holds lower-cased names and is
    updated.
    """
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    base = unicodedata.normalize("NFKC", base)
    base = "".join(c if c.isalnum() or c in "-_.()+ " else "_" for c in base)
    base = re.sub(r"\s+", "_", base)
    base = re.sub(r"_{2,}", "_", base).strip("._- ")

    ext = extension_for(fmt)
    if ext:
        stem = base[: -len(ext) - 1] if base.lower().endswith("." + ext) else base
    else:
        stem, dot, own = base.rpartition(".")
        if dot and re.fullmatch(r"[A-Za-z0-9]{1,10}", own):
            ext = own.lower()
        else:
            stem = base
    stem = stem[:80].strip("._- ") or _fallback_stem(fallback)

    suffix = f".{ext}" if ext else ""
    candidate, n = stem + suffix, 2
    while candidate.lower() in taken:
        candidate, n = f"{stem}-{n}{suffix}", n + 1
    taken.add(candidate.lower())
    return candidate


def _fallback_stem(text: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9-]", "", text)[:12]
    return f"resource-{cleaned}" if cleaned else "resource"


@dataclass
class ResourceSpec:
    id: str
    name: str
    format: str
    fetch_url: str
    source: str = "external"
    size: int | None = None
    hash: str | None = None
    last_modified: str | None = None
    metadata_modified: str | None = None
    dataset_id: str | None = None

    @classmethod
    def from_dict(cls, d: dict, *, trusted_prefixes: Iterable[str] = ()) -> "ResourceSpec":
        url = str(d.get("fetch_url") or d.get("url") or "")
        source = d.get("source")
        if source not in ("ckan", "external"):
            trusted = any(p and url.startswith(p) for p in trusted_prefixes)
            source = "ckan" if trusted else "external"
        try:
            size = int(d["size"]) if d.get("size") not in (None, "") else None
        except (TypeError, ValueError):
            size = None
        return cls(
            id=str(d.get("id") or ""),
            name=str(d.get("name") or ""),
            format=str(d.get("format") or ""),
            fetch_url=url,
            source=source,
            size=size,
            hash=(str(d["hash"]) if d.get("hash") else None),
            last_modified=(str(d["last_modified"]) if d.get("last_modified") else None),
            metadata_modified=(str(d["metadata_modified"]) if d.get("metadata_modified") else None),
            dataset_id=(str(d.get("package_id") or d.get("dataset_id") or "") or None),
        )

    def static_key(self) -> str | None:
        """The cache key known before any request, or None."""
        if self.hash:
            return f"{self.id}|hash:{self.hash}"
        if self.last_modified:
            return f"{self.id}|last-modified:{self.last_modified}"
        return None


@dataclass
class Fetched:
    resource: ResourceSpec
    filename: str | None
    cache_key: str | None
    path: Path | None
    error: str | None
    downloaded_bytes: int = 0


@dataclass
class _Download:
    not_modified: bool = False
    tmp_path: Path | None = None
    size: int = 0
    etag: str | None = None
    last_modified: str | None = None


class ResourceCache:
    """A shared, size-limited cache of downloaded resources."""

    def __init__(
        self,
        root: Path,
        *,
        max_bytes: int,
        max_resource_size: int,
        download_timeout: float,
        fetch_allowlist: Iterable[str] = (),
        concurrency: int = 4,
        ca_bundle: str | None = None,
    ) -> None:
        self.max_resource_size = max_resource_size
        self.download_timeout = download_timeout
        self.downloader = GuardedDownloader(
            max_bytes=max_resource_size, timeout=download_timeout, allowlist=fetch_allowlist,
            ca_bundle=ca_bundle, user_agent="ckanext-jupyternotebook-preload",
        )
        self.entry_store = CacheEntries(root, max_bytes=max_bytes, download_timeout=download_timeout)
        self._executor = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="preload")

    def close(self) -> None:
        self._executor.shutdown(wait=True)

    @property
    def root(self) -> Path:
        return self.entry_store.root

    @property
    def max_bytes(self) -> int:
        return self.entry_store.max_bytes

    # -- cache management: CacheEntries' own, see there ---------------------

    def entries(self) -> list[dict]:
        return self.entry_store.entries()

    def total_bytes(self) -> int:
        return self.entry_store.total_bytes()

    def evict(self, keep: set[str]) -> int:
        return self.entry_store.evict(keep)

    def clear(self, keep: set[str], dataset_id: str | None = None) -> int:
        return self.entry_store.clear(keep, dataset_id)

    # -- fetching ---------------------------------------------------------

    async def fetch_all(self, resources: list[ResourceSpec], *, dataset_id: str | None = None) -> list[Fetched]:
        """Fetch every resource, from the cache when it is unchanged."""
        taken = {README_NAME.lower()}
        jobs = []
        for spec in resources:
            if dataset_id and not spec.dataset_id:
                spec.dataset_id = dataset_id
            fallback_name = spec.name or unquote(urlsplit(spec.fetch_url).path)
            filename = safe_filename(fallback_name, spec.format, taken, fallback=spec.id)
            jobs.append(self._fetch_one(spec, filename))
        return list(await asyncio.gather(*jobs))

    async def _fetch_one(self, spec: ResourceSpec, filename: str) -> Fetched:
        try:
            if not spec.fetch_url:
                raise FetchError("no download URL")
            key = spec.static_key()
            lock_name = key or self._link_name(spec)
            async with self.entry_store.claim(lock_name):
                if key:
                    return await self._fetch_static(spec, filename, key)
                return await self._fetch_revalidated(spec, filename)
        except FetchError as exc:
            return Fetched(spec, filename, None, None, str(exc), 0)
        except Exception:
            log.exception("preloading resource %s failed", spec.id)
            return Fetched(spec, filename, None, None, "download failed (internal error)", 0)

    async def _fetch_static(self, spec: ResourceSpec, filename: str, key: str) -> Fetched:
        if self.entry_store.touch(key):
            return Fetched(spec, filename, key, self.entry_store.entry_path(key), None, 0)
        result = await self._run_download(spec, None)
        path = self._store(key, spec, result)
        return Fetched(spec, filename, key, path, None, result.size)

    async def _fetch_revalidated(self, spec: ResourceSpec, filename: str) -> Fetched:
        link_name = self._link_name(spec)
        link = self.entry_store.link(link_name)
        old_key = link.get("key")
        cached = bool(old_key) and self.entry_store.entry_path(old_key).exists()
        validators = None
        if cached:
            if link.get("etag") or link.get("last_modified"):
                validators = {"etag": link.get("etag"), "last_modified": link.get("last_modified")}
            elif spec.metadata_modified and link.get("metadata_modified") == spec.metadata_modified:
                self.entry_store.touch(old_key)
                return Fetched(spec, filename, old_key, self.entry_store.entry_path(old_key), None, 0)

        result = await self._run_download(spec, validators)
        if result.not_modified:
            self.entry_store.touch(old_key)
            return Fetched(spec, filename, old_key, self.entry_store.entry_path(old_key), None, 0)

        where = digest(spec.fetch_url if spec.source == "external" else spec.id)[:12]
        if result.etag:
            key = f"{spec.id}|{where}|etag:{result.etag}"
        elif result.last_modified:
            key = f"{spec.id}|{where}|last-modified:{result.last_modified}"
        elif spec.metadata_modified:
            key = f"{spec.id}|metadata-modified:{spec.metadata_modified}"
        else:
            key = f"{spec.id}|uncached:{uuid.uuid4().hex}"
        path = self._store(key, spec, result)
        self.entry_store.set_link(link_name, {
            "key": key,
            "etag": result.etag,
            "last_modified": result.last_modified,
            "metadata_modified": spec.metadata_modified,
        })
        return Fetched(spec, filename, key, path, None, result.size)

    async def _run_download(self, spec: ResourceSpec, validators: dict | None) -> _Download:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._download, spec, validators)

    @staticmethod
    def _link_name(spec: ResourceSpec) -> str:
        url = spec.fetch_url if spec.source == "external" else ""
        return f"{spec.id}|link|{url}"

    def _store(self, key: str, spec: ResourceSpec, result: _Download) -> Path:
        return self.entry_store.store(key, result.tmp_path, result.size, resource_id=spec.id,
                                      dataset_id=spec.dataset_id, url=spec.fetch_url)

    # -- the download itself (worker thread) --------------------------------

    def _download(self, spec: ResourceSpec, validators: dict | None) -> _Download:
        tmp_path = self.entry_store.tmp_dir / uuid.uuid4().hex
        try:
            with open(tmp_path, "wb") as sink:
                result = self.downloader.fetch(spec.fetch_url, sink, trusted=spec.source == "ckan",
                                               validators=validators)
            if result.not_modified:
                return _Download(not_modified=True)
            kept = tmp_path.with_name(tmp_path.name + ".done")
            os.replace(tmp_path, kept)
            return _Download(tmp_path=kept, size=result.size, etag=result.etag,
                             last_modified=result.last_modified)
        finally:
            tmp_path.unlink(missing_ok=True)


# -- per-session data directory -------------------------------------------

def populate_data_dir(fetched: list[Fetched], data_dir: Path, *, readme: bool = True) -> None:
    """Fill ``data_dir`` with this dataset's files, read-only.

    Each file is a hard link to the cache entry (a copy when the cache is
    on another file system), mode 0444; the directory ends up mode 0555.
    ``data_dir`` may lie in a home the session owns and has tampered with:
    whatever is under its name and is not a directory root owns (a symlink
    to /etc, say) is removed, never followed, and every write goes through
    a descriptor of the checked directory.
    """
    data_dir = Path(data_dir)
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    dir_fd = session_home.fresh_own_dir(data_dir.parent, data_dir.name)
    failures: list[tuple[Fetched, str]] = []
    present: list[Fetched] = []
    try:
        for item in fetched:
            if item.path is None or not item.filename:
                failures.append((item, item.error or "not downloaded"))
                continue
            if not _is_safe_name(item.filename):
                failures.append((item, "unsafe file name"))
                continue
            try:
                _place(item.path, item.filename, dir_fd)
            except FileNotFoundError:
                failures.append((item, "removed from the cache before it could be linked"))
                continue
            present.append(item)
        if readme:
            text = _readme_text(present, failures).encode("utf-8")
            _create(README_NAME, dir_fd, lambda out: out.write(text))
    finally:
        os.fchmod(dir_fd, 0o555)
        os.close(dir_fd)


def _place(source: Path, name: str, dir_fd: int) -> None:
    """A hard link to the (0444) cache entry, or a 0444 copy of it."""
    _unlink(name, dir_fd)
    try:
        os.link(source, name, dst_dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        raise
    except OSError:
        pass  # another file system: copied below
    else:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        try:
            os.fchmod(fd, 0o444)
        finally:
            os.close(fd)
        return
    with open(source, "rb") as src:
        _create(name, dir_fd, lambda out: shutil.copyfileobj(src, out, 1 << 20))


def _create(name: str, dir_fd: int, fill) -> None:
    _unlink(name, dir_fd)
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600, dir_fd=dir_fd)
    with os.fdopen(fd, "wb") as out:
        fill(out)
        os.fchmod(out.fileno(), 0o444)


def _unlink(name: str, dir_fd: int) -> None:
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass


def _is_safe_name(name: str) -> bool:
    return (
        not name.startswith(".")
        and "/" not in name
        and "\\" not in name
        and name.lower() != README_NAME.lower()
        and all(c.isprintable() for c in name)
    )


def _one_line(text: str) -> str:
    text = "".join(c if c.isprintable() else " " for c in str(text))
    return re.sub(r"([\\`*_\[\]<>|#])", r"\\\1", text).strip()


def _readme_text(present: list[Fetched], failures: list[tuple[Fetched, str]]) -> str:
    lines = [
        "# Data",
        "",
        "These are the dataset's files, read-only. This session is temporary:",
        "anything you change in it is discarded when it ends.",
        "",
    ]
    if present:
        lines += ["| file | resource | format | size |", "|---|---|---|---|"]
        for item in present:
            try:
                size = human_size(os.stat(item.path).st_size)
            except OSError:
                size = ""
            lines.append(
                f"| `{item.filename}` | {_one_line(item.resource.name)} "
                f"| {_one_line(item.resource.format)} | {size} |"
            )
    else:
        lines.append("No files could be downloaded.")
    if failures:
        lines += ["", "## Not downloaded", ""]
        for item, reason in failures:
            label = _one_line(item.resource.name or item.resource.id)
            lines.append(f"- {label} ({_one_line(item.resource.format) or 'unknown format'}): {_one_line(reason)}")
    return "\n".join(lines) + "\n"
