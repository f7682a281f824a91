"""Notebook bytes → a valid nbformat v4 notebook, within the size limit.

Whatever nbformat can read, upgrade (v1-v3) or repair is accepted, through
the same ``notebook_upgrade`` the bridge uses for the copy a session opens;
only what is not JSON, or not a notebook at all, is refused.
"""

from __future__ import annotations

import json
from typing import Optional

import ckan.plugins.toolkit as tk

from jupyterhub_service.notebook_upgrade import NotANotebook, upgrade

from .errors import InvalidNotebook, MalformedNotebook, NotebookTooLarge

#: Used when ``ckanext.jupyternotebook.preview_max_size`` is not set.
DEFAULT_MAX_NOTEBOOK_BYTES = 20 * 1024 * 1024


def max_notebook_bytes() -> int:
    value = tk.config.get("ckanext.jupyternotebook.preview_max_size")
    try:
        return int(value) if value not in (None, "") else DEFAULT_MAX_NOTEBOOK_BYTES
    except (TypeError, ValueError):
        return DEFAULT_MAX_NOTEBOOK_BYTES


def load_notebook(raw: bytes, limit: Optional[int] = None):
    """Parse, upgrade and repair notebook bytes into an nbformat v4 node."""
    limit = max_notebook_bytes() if limit is None else limit
    if len(raw) > limit:
        raise NotebookTooLarge(limit)
    try:
        data = json.loads(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise MalformedNotebook(str(e)) from e
    try:
        nb, _changed = upgrade(data)
    except NotANotebook as e:
        raise InvalidNotebook(str(e)) from e
    return nb
