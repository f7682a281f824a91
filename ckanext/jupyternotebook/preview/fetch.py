"""Reading a notebook resource's bytes for its preview: uploads through
CKAN's storage, links through the guarded downloader the bridge uses
(``jupyterhub_service.guarded_download``), both within the size limit."""

from __future__ import annotations

import io
import logging
from typing import Any, Optional

import ckan.plugins.toolkit as tk

from .errors import NotebookTooLarge, NotebookUnavailable, PreviewError
from .load import max_notebook_bytes

log = logging.getLogger(__name__)

#: The whole read of a link resource (resolution, redirects, body) ends
#: after this long: a visitor waits for the page meanwhile.
READ_URL_SECONDS = 20.0


def read_resource(resource: dict[str, Any], limit: Optional[int] = None,
                  timeout: Optional[float] = None) -> bytes:
    limit = max_notebook_bytes() if limit is None else limit
    timeout = READ_URL_SECONDS if timeout is None else timeout
    if resource.get("url_type") == "upload":
        return _read_upload(resource, limit)
    if resource.get("url_type"):
        # Another extension's storage (e.g. datastore): nothing to read here.
        raise NotebookUnavailable(f"url_type {resource['url_type']!r}")
    return _read_url(resource.get("url") or "", limit, timeout)


def _read_limited(chunks, limit: int) -> bytes:
    buf = bytearray()
    for chunk in chunks:
        buf += chunk
        if len(buf) > limit:
            raise NotebookTooLarge(limit)
    return bytes(buf)


def _read_upload(resource: dict[str, Any], limit: int) -> bytes:
    from ckan.lib import uploader

    from ..compat import files, keeper_storage

    upload = uploader.get_resource_uploader(resource)
    path = upload.get_path(resource["id"])
    storage = keeper_storage(upload)
    try:
        if storage is not None:
            location = files.Location(path)
            size = storage.size(location)
            if size > limit:
                raise NotebookTooLarge(limit)
            return _read_limited(
                storage.stream(files.FileData(location, size=size)), limit)
        with open(path, "rb") as f:
            return _read_limited(iter(lambda: f.read(1 << 16), b""), limit)
    except PreviewError:
        raise
    except Exception as e:
        log.warning("cannot read upload of resource %s: %s", resource["id"], e)
        raise NotebookUnavailable(str(e)) from e


def _fetch_allowlist() -> list[str]:
    allow = tk.config.get("ckanext.jupyternotebook.fetch_allowlist") or []
    return allow.split() if isinstance(allow, str) else list(allow)


def _read_url(url: str, limit: int, timeout: float) -> bytes:
    """GET an external notebook through the bridge's guarded downloader:
    public addresses only (every hop, pinned), no proxy, one deadline."""
    from jupyterhub_service.guarded_download import FetchError, GuardedDownloader, TooLarge

    downloader = GuardedDownloader(
        max_bytes=limit, timeout=timeout, allowlist=_fetch_allowlist(),
        user_agent="ckanext-jupyternotebook-preview",
    )
    sink = io.BytesIO()
    try:
        downloader.fetch(url, sink)
    except TooLarge as e:
        raise NotebookTooLarge(limit) from e
    except FetchError as e:
        log.info("preview of %s not read: %s", url, e)
        raise NotebookUnavailable(str(e)) from e
    return sink.getvalue()
