"""The parameters a notebook declares, for the report form: the assignments
of papermill's ``parameters``-tagged cell and Colab-style ``# @param``
lines, with their default values. (The bridge puts the values in; this only
offers the names.)"""
from __future__ import annotations

import ast
import re
from typing import Any

PARAM_LINE = re.compile(
    r"^[ \t]*(?P<name>[A-Za-z_][A-Za-z0-9_]*)[ \t]*=[ \t]*(?P<value>.*?)"
    r"[ \t]*#[ \t]*@param\b(?P<spec>.*)$")


def _default(text: str) -> Any:
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return text.strip()


def declared(nb: Any) -> list[dict[str, Any]]:
    """``[{name, default, source: "papermill"|"colab"}]`` in notebook
    order, each name once."""
    found: dict[str, dict[str, Any]] = {}
    for cell in getattr(nb, "cells", None) or nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        source = cell.get("source") or ""
        if isinstance(source, list):
            source = "".join(source)
        tags = (cell.get("metadata") or {}).get("tags") or []
        if "parameters" in tags:
            try:
                tree = ast.parse(source)
            except SyntaxError:
                tree = None
            for node in getattr(tree, "body", []):
                if isinstance(node, ast.Assign) and len(node.targets) == 1 \
                        and isinstance(node.targets[0], ast.Name):
                    segment = ast.get_source_segment(source, node.value)
                    found.setdefault(node.targets[0].id, {
                        "name": node.targets[0].id,
                        "default": _default(segment or ""),
                        "source": "papermill"})
        for line in source.splitlines():
            match = PARAM_LINE.match(line)
            if match:
                found.setdefault(match["name"], {
                    "name": match["name"],
                    "default": _default(match["value"]),
                    "source": "colab"})
    return list(found.values())
