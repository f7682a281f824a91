"""Notebooks from everywhere: any file nbformat can read, as a valid
nbformat v4 notebook.

nbformat upgrades v1-v3 notebooks to v4 and can mend some of what breaks its
schema (``validator.normalize``: duplicate or missing cell ids, metadata of
the wrong type). Files written by old or other tools break it in a few more
ways that are as easy to mend, so a valid notebook comes out of:

- nbformat 1, 2 or 3 (v3 files without ``metadata``, ``worksheets`` or a
  worksheet's ``cells`` get empty ones), upgraded by ``nbformat.convert``;
- a v4 file without ``nbformat_minor``;
- cells without ``source`` or ``metadata``, code cells without ``outputs``
  or ``execution_count``; a v3 ``heading`` cell in a v4 file becomes a
  markdown heading, as nbformat's own upgrade does; outputs of a type that no
  version of the format has are dropped;
- cell ids that are invalid (characters, length), duplicated or missing get
  new ones;
- cell and notebook metadata that nbformat's schema refuses is stripped.

Anything else, and anything not JSON, is ``NotANotebook``. The CKAN preview
and the bridge (which writes the upgraded copy into a session's home) both
use this; it imports nbformat only, never CKAN.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import nbformat
from nbformat.corpus.words import generate_corpus_id
from nbformat.validator import ValidationError, isvalid, normalize

#: The bridge upgrades notebooks up to this size; larger ones (JSON parsing
#: holds several times the file in memory) are copied as they are.
MAX_UPGRADE_BYTES = 64 * 1024 * 1024

_CELL_ID = re.compile(r"^[a-zA-Z0-9-_]{1,64}$")
_OUTPUT_TYPES = frozenset({"stream", "display_data", "execute_result", "error"})


class NotANotebook(ValueError):
    """Data that no upgrade or repair makes a valid notebook."""


def upgrade(data: Any) -> tuple[nbformat.NotebookNode, bool]:
    """``(notebook, changed)``: ``data`` (parsed notebook JSON, modified in
    place) as a valid v4 notebook, and whether anything had to change.

    Raises ``NotANotebook`` for anything no upgrade or repair makes valid.
    """
    if not isinstance(data, dict) or "nbformat" not in data:
        raise NotANotebook("no nbformat field")
    major = data["nbformat"]
    if type(major) is not int or major not in nbformat.versions:
        raise NotANotebook(f"unknown nbformat version {major!r}")
    try:
        changed = _mend_before_reading(data, major)
        nb = nbformat.versions[major].to_notebook_json(data)
        if major != 4:
            nb = nbformat.convert(nb, 4)
            changed = True
        if isvalid(nb):
            return nb, changed
        _mend_cells(nb)
        _mend_cell_ids(nb)
        _stripped, nb = normalize(nb, strip_invalid_metadata=True)
        nb = nbformat.from_dict(nb)
        nbformat.validate(nb)
    except NotANotebook:
        raise
    except (ValidationError, LookupError, AttributeError, TypeError, ValueError,
            RecursionError) as e:  # how nbformat reports a broken structure
        raise NotANotebook(str(e).splitlines()[0] if str(e) else type(e).__name__) from e
    return nb, True


def upgraded_copy(raw: bytes) -> bytes | None:
    """The bytes a session should open for the notebook file ``raw``.

    None means "copy the file as it is": it is a valid v4 notebook already
    (so the copy stays byte-identical), or not a notebook at all, or larger
    than ``MAX_UPGRADE_BYTES``. Otherwise the upgraded, repaired notebook.
    """
    if len(raw) > MAX_UPGRADE_BYTES:
        return None
    try:
        data = json.loads(raw.decode("utf-8-sig"))
        nb, changed = upgrade(data)
    except (UnicodeDecodeError, ValueError, RecursionError):  # NotANotebook is one
        return None
    if not changed:
        return None
    text = nbformat.writes(nb)
    return (text if text.endswith("\n") else text + "\n").encode("utf-8")


def upgraded_file(path) -> bytes | None:
    """``upgraded_copy`` of the file at ``path``, read only when it is no
    larger than ``MAX_UPGRADE_BYTES``."""
    try:
        if os.path.getsize(path) > MAX_UPGRADE_BYTES:
            return None
        with open(path, "rb") as f:
            return upgraded_copy(f.read())
    except OSError:
        return None


def _mend_before_reading(data: dict, major: int) -> bool:
    """What nbformat's readers and converter need present to read at all."""
    changed = False
    if major in (3, 4) and not isinstance(data.get("metadata"), dict):
        data["metadata"] = {}
        changed = True
    if major == 3:
        if "worksheets" not in data:
            data["worksheets"] = []
            changed = True
        if not isinstance(data["worksheets"], list):
            raise NotANotebook("worksheets is not a list")
        for ws in data["worksheets"]:
            if not isinstance(ws, dict):
                raise NotANotebook("a worksheet is not an object")
            if "cells" not in ws:
                ws["cells"] = []
                changed = True
    if major == 4:
        if not isinstance(data.get("cells"), list):
            raise NotANotebook("cells is not a list")
        for cell in data["cells"]:
            if not isinstance(cell, dict):
                raise NotANotebook("a cell is not an object")
            if not isinstance(cell.get("metadata"), dict):  # read as cell.metadata
                cell["metadata"] = {}
                changed = True
        minor = data.get("nbformat_minor")
        if type(minor) is not int or minor < 0:
            with_ids = any(isinstance(c, dict) and "id" in c for c in data["cells"])
            data["nbformat_minor"] = 5 if with_ids else 4
            changed = True
    return changed


def _mend_cells(nb) -> None:
    for cell in nb["cells"]:
        if cell.get("cell_type") == "heading":
            # as nbformat.v4.convert.upgrade_cell, without giving an id to a
            # cell of a notebook older than 4.5
            level = cell.pop("level", 1)
            source = cell.get("source", "")
            source = "".join(source) if isinstance(source, list) else str(source)
            hashes = "#" * (level if type(level) is int and 1 <= level <= 6 else 1)
            cell["cell_type"] = "markdown"
            cell["source"] = f"{hashes} {' '.join(source.splitlines())}"
        cell.setdefault("source", "")
        if cell.get("cell_type") == "code":
            cell.setdefault("execution_count", None)
            outputs = cell.get("outputs", [])
            if not isinstance(outputs, list):
                raise NotANotebook("outputs is not a list")
            cell["outputs"] = [o for o in outputs
                               if isinstance(o, dict) and o.get("output_type") in _OUTPUT_TYPES]


def _mend_cell_ids(nb) -> None:
    """New ids for invalid, duplicated or missing ones (nbformat 4.5+)."""
    if (nb.get("nbformat"), nb.get("nbformat_minor", 0)) < (4, 5):
        return
    seen: set[str] = set()
    for cell in nb["cells"]:
        cell_id = cell.get("id")
        if not isinstance(cell_id, str) or not _CELL_ID.match(cell_id) or cell_id in seen:
            cell_id = generate_corpus_id()
            while cell_id in seen:
                cell_id = generate_corpus_id()
            cell["id"] = cell_id
        seen.add(cell_id)
