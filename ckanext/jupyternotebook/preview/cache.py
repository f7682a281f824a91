"""Rendered previews kept in memory: a thread-safe LRU (cachetools'
``TLRUCache``) bounded in bytes of HTML, keyed by the resource id plus its
version (``hash``, else ``last_modified``, else ``metadata_modified``), with
an expiry for link resources that carry no version and for failed reads."""

from __future__ import annotations

import math
import threading
import time
from typing import Any, NamedTuple, Optional

import cachetools

from .load import max_notebook_bytes

#: Link resources without hash or last_modified are re-read after this long.
LINK_TTL_SECONDS = 600
#: A read that failed (host down, refused, timed out) is retried after this
#: long, so anonymous views cannot make CKAN hammer a slow or dead host.
FAILED_READ_TTL_SECONDS = 60
#: What an entry that is not a page (a remembered error) counts for.
_ERROR_ENTRY_BYTES = 256


class _Entry(NamedTuple):
    value: Any  # the page (str) or the PreviewError it raised
    ttl: Optional[float]


def _size(entry: _Entry) -> int:
    return len(entry.value) if isinstance(entry.value, str) else _ERROR_ENTRY_BYTES


def _expires(_key, entry: _Entry, now: float) -> float:
    return now + entry.ttl if entry.ttl else math.inf


class PreviewCache:
    """Rendered pages (or their PreviewError), least recently used out first."""

    def __init__(self, max_bytes: int = 128 * 1024 * 1024, timer=time.monotonic):
        self.max_bytes = max_bytes
        self._entries = cachetools.TLRUCache(maxsize=max_bytes, ttu=_expires, timer=timer,
                                             getsizeof=_size)
        self._lock = threading.Lock()  # cachetools' caches are not thread-safe

    def get(self, key: tuple):
        with self._lock:
            entry = self._entries.get(key)
        return None if entry is None else entry.value

    def put(self, key: tuple, value: Any, ttl: Optional[float] = None) -> None:
        with self._lock:
            try:
                self._entries[key] = _Entry(value, ttl)
            except ValueError:  # larger than the whole cache: not kept
                self._entries.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


cache = PreviewCache()


def cache_key(resource: dict[str, Any]) -> tuple[tuple, Optional[float]]:
    """(key, ttl): id plus the first of hash, last_modified, metadata_modified."""
    version = resource.get("hash") or resource.get("last_modified")
    ttl = None
    if not version:
        version = resource.get("metadata_modified") or ""
        if resource.get("url_type") != "upload":
            ttl = LINK_TTL_SECONDS
    key = (resource["id"], str(version), resource.get("url") or "",
           max_notebook_bytes())
    return key, ttl
