"""Static, sanitized HTML previews of ``.ipynb`` resources.

A resource's bytes are read (``fetch``: uploads through CKAN's storage,
links through the bridge's guarded downloader), parsed, upgraded and
repaired into a valid v4 notebook (``load``, through the
``notebook_upgrade`` the bridge shares), rendered with nbconvert's ``basic``
template and cleaned by nh3 under a tight allowlist (``render``,
``sanitize``), and wrapped in a page served with
``Content-Security-Policy: sandbox`` (``page``) inside an ``<iframe
sandbox>``: the sanitizer is the first wall, the sandbox the second, so a
sanitizer bug still cannot run script on CKAN's origin. Pages, and why a
notebook has none (``errors``), are kept in memory (``cache``).
"""

from __future__ import annotations

from typing import Any, Callable

from .cache import FAILED_READ_TTL_SECONDS, cache, cache_key
from .errors import (InvalidNotebook, MalformedNotebook, NotebookTooLarge,
                     NotebookUnavailable, PreviewError)
from .fetch import read_resource
from .formats import is_notebook_resource
from .load import load_notebook, max_notebook_bytes
from .page import PREVIEW_HEADERS, message_page, render_page
from .sanitize import sanitize_html

__all__ = [
    "PREVIEW_HEADERS", "InvalidNotebook", "MalformedNotebook", "NotebookTooLarge",
    "NotebookUnavailable", "PreviewError", "cache", "is_notebook_resource",
    "load_notebook", "max_notebook_bytes", "message_page", "read_resource",
    "render_page", "resource_preview", "sanitize_html",
]


def resource_preview(
    resource: dict[str, Any],
    reader: Callable[[dict[str, Any]], bytes] = read_resource,
) -> str:
    """The preview page of a resource the caller may read; raises PreviewError.

    Access checks are the caller's: this reads the file unconditionally.
    """
    key, ttl = cache_key(resource)
    hit = cache.get(key)
    if hit is None:
        title = resource.get("name") or resource["id"]
        try:
            hit = render_page(reader(resource), title)
        except NotebookUnavailable as e:
            # often transient: remembered briefly, then read again
            cache.put(key, e, FAILED_READ_TTL_SECONDS)
            raise
        except PreviewError as e:
            hit = e
        cache.put(key, hit, ttl)
    if isinstance(hit, PreviewError):
        raise hit
    return hit
