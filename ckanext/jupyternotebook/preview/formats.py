"""Which resources are notebooks: by format, or by the file name in the URL
or the resource name."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

NOTEBOOK_FORMATS = frozenset({"ipynb", ".ipynb", "jupyter notebook", "jupyter",
                              "notebook", "application/x-ipynb+json"})


def is_notebook_resource(resource: dict[str, Any]) -> bool:
    """True for ``.ipynb`` resources, by format or by file name (pure)."""
    fmt = (resource.get("format") or "").strip().lower()
    if fmt in NOTEBOOK_FORMATS:
        return True
    for value in (resource.get("url"), resource.get("name")):
        if value and urlsplit(str(value)).path.lower().endswith(".ipynb"):
            return True
    return False
