"""The ``start_here.ipynb`` notebook generated for each session.

``build_start_here(dataset, files) -> dict`` returns an nbformat v4 notebook:
a title cell about the dataset, then for each file working code to open it
from ``data/<filename>`` by format (CSV/TSV, Excel, JSON, GeoJSON, Parquet;
anything else as its path and size). ``dataset`` has ``title``/``name`` and
``url`` (its CKAN page); each of ``files`` has ``filename``, ``format``,
``name`` and, when the download failed, ``error``.

``write_notebook(nb, path)`` validates and writes it.

Names and titles come from CKAN users, so they only ever appear escaped in
Markdown cells; code cells hold file names as Python string literals.
"""

from __future__ import annotations

import json
import keyword
import os
import re
from pathlib import Path

from jupyterhub_service.preload import extension_for

# nbformat is imported where it is used: importing it (jsonschema and its
# format checkers) costs seconds of CPU, and the bridge imports this module
# before it listens; JupyterHub gives a managed service 10 s to answer.

_KINDS = {
    "csv": "csv",
    "tsv": "tsv",
    "xls": "excel",
    "xlsx": "excel",
    "json": "json",
    "geojson": "geojson",
    "parquet": "parquet",
}
_RESERVED_NAMES = {"pd", "json", "Path", "path", "gpd", "data", "display"}


def build_start_here(dataset: dict, files: list[dict]) -> dict:
    """A notebook that opens each of the dataset's files."""
    from nbformat import v4

    title = _md(dataset.get("title") or dataset.get("name") or "Dataset")
    url = str(dataset.get("url") or "")
    link = f"[{title}](<{url}>)" if re.match(r"https?://[^\s<>]+$", url) else title
    cells = [
        v4.new_markdown_cell(
            f"# {title}\n\n"
            f"This notebook was generated for the dataset {link}. "
            "Its files are in the read-only `data/` folder next to this notebook.\n\n"
            "**This session is temporary.** When it ends, everything you changed here "
            "is discarded: download anything you want to keep. "
            "The originals in the portal never change."
        ),
    ]

    ready = [f for f in files if f.get("filename") and not f.get("error")]
    failed = [f for f in files if f.get("error") or not f.get("filename")]
    if ready:
        cells.append(v4.new_code_cell("import json\nfrom pathlib import Path\n\nimport pandas as pd"))
    used: set[str] = set()
    for f in ready:
        kind = _kind(f)
        heading = f"## {_md(f.get('name') or f['filename'])}\n\n`data/{_md_code(f['filename'])}`"
        if f.get("format"):
            heading += f" ({_md(f['format'])})"
        cells.append(v4.new_markdown_cell(heading))
        cells.append(v4.new_code_cell(_code(kind, f"data/{f['filename']}", _variable(f["filename"], kind, used))))

    if failed:
        lines = ["## Not downloaded", ""]
        for f in failed:
            label = _md(f.get("name") or f.get("filename") or "resource")
            lines.append(f"- {label}: {_md(f.get('error') or 'not downloaded')}")
        lines += ["", "See `data/README.md`."]
        cells.append(v4.new_markdown_cell("\n".join(lines)))

    nb = v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def write_notebook(nb: dict, path: Path) -> None:
    """Validate ``nb`` and write it to ``path`` (replacing any file there)."""
    import nbformat

    node = nbformat.from_dict(nb)
    nbformat.validate(node)
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as out:
        nbformat.write(node, out)
    os.replace(tmp, path)


def _kind(f: dict) -> str:
    ext = Path(f["filename"]).suffix.lstrip(".").lower()
    return _KINDS.get(ext) or _KINDS.get(extension_for(f.get("format")) or "", "other")


def _code(kind: str, path: str, var: str) -> str:
    p = json.dumps(path, ensure_ascii=False)  # also a valid Python string literal
    if kind == "csv":
        return (
            f"try:\n    {var} = pd.read_csv({p})\n"
            f"except UnicodeDecodeError:\n"
            f"    # Not UTF-8: older exports are often Latin-1.\n"
            f"    {var} = pd.read_csv({p}, encoding=\"latin-1\")\n"
            f"{var}.head()"
        )
    if kind == "tsv":
        return (
            f"try:\n    {var} = pd.read_csv({p}, sep=\"\\t\")\n"
            f"except UnicodeDecodeError:\n"
            f"    {var} = pd.read_csv({p}, sep=\"\\t\", encoding=\"latin-1\")\n"
            f"{var}.head()"
        )
    if kind == "excel":
        return (
            f"# sheet_name=None would load every sheet into a dict.\n"
            f"try:\n    {var} = pd.read_excel({p})\n"
            f"except ImportError as exc:\n"
            f"    # Old .xls files need xlrd: run  %pip install xlrd  and re-run this cell.\n"
            f"    {var} = None\n"
            f"    print(exc)\n"
            f"{var}.head() if {var} is not None else None"
        )
    if kind == "json":
        return (
            f"try:\n    {var} = pd.read_json({p})\n"
            f"except ValueError:\n"
            f"    # Not table-shaped: load it as plain JSON.\n"
            f"    with open({p}, encoding=\"utf-8\") as f:\n"
            f"        {var} = json.load(f)\n"
            f"{var}.head() if isinstance({var}, pd.DataFrame) else type({var}).__name__"
        )
    if kind == "geojson":
        return (
            f"with open({p}, encoding=\"utf-8\") as f:\n"
            f"    {var} = json.load(f)\n"
            f"print(len({var}.get(\"features\", [])), \"features\")\n\n"
            f"try:\n    import geopandas as gpd\n"
            f"except ImportError:\n"
            f"    gpd = None  # optional: %pip install geopandas\n"
            f"if gpd is not None:\n"
            f"    display(gpd.read_file({p}).head())"
        )
    if kind == "parquet":
        return f"{var} = pd.read_parquet({p})\n{var}.head()"
    return f"path = Path({p})\nprint(path, f\"{{path.stat().st_size:,}} bytes\")"


def _variable(filename: str, kind: str, used: set[str]) -> str:
    stem = re.sub(r"[^0-9a-zA-Z_]+", "_", Path(filename).stem).strip("_").lower()[:40]
    prefix = {"geojson": "geo", "json": "data"}.get(kind, "df")
    name = f"{prefix}_{stem}" if stem else prefix
    if keyword.iskeyword(name) or name in _RESERVED_NAMES:
        name += "_"
    candidate, n = name, 2
    while candidate in used:
        candidate, n = f"{name}_{n}", n + 1
    used.add(candidate)
    return candidate


def _md(text) -> str:
    """One line of plain text, safe inside Markdown (no HTML, links or headings)."""
    text = "".join(c if c.isprintable() else " " for c in str(text))
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return re.sub(r"([\\`*_\[\]()#|!~])", r"\\\1", text).strip()


def _md_code(text: str) -> str:
    return str(text).replace("`", "'")
