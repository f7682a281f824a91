"""The sessions' JupyterLab files, placed in an environment's share/jupyter.

Two things every session loads: the plain-JavaScript extension (the time left,
the warnings, Download and Save to the portal) and the settings overrides that
turn off first-use prompts. A wheel install places them through setup.py's
``data_files``, which reads :func:`data_files`; an editable install
(``pip install -e``, what ``make venv`` and the matrix environments do) leaves
``data_files`` out, so::

    python -m jupyterhub_service.lab_files

copies them into ``sys.prefix``, where the local spawner's sessions (which
run from the hub's environment) look. The session image copies the same tree
(docker/singleuser/Dockerfile).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

EXTENSION = "ckanext-jupyternotebook-session"
SOURCE = Path(__file__).resolve().parent / "labextension"

# where each source directory goes, under <prefix>/share/jupyter
_TARGETS = {
    EXTENSION: f"labextensions/{EXTENSION}",
    "overrides.d": "lab/settings/overrides.d",
}


def _files() -> list[tuple[str, Path]]:
    """(target directory under share/jupyter, source file) for each file."""
    out = []
    for source_dir, target in _TARGETS.items():
        root = SOURCE / source_dir
        for path in sorted(root.rglob("*")):
            if path.is_file():
                rel = path.parent.relative_to(root).as_posix()
                out.append((target if rel == "." else f"{target}/{rel}", path))
    return out


def data_files(repo_root: Path) -> list[tuple[str, list[str]]]:
    """setup.py's ``data_files`` entries, with paths relative to the repo."""
    grouped: dict[str, list[str]] = {}
    for target, path in _files():
        grouped.setdefault(f"share/jupyter/{target}", []).append(
            path.relative_to(repo_root).as_posix())
    return sorted(grouped.items())


def install(prefix: str) -> list[Path]:
    """Copy the files under ``prefix``/share/jupyter; returns what was written."""
    written = []
    base = Path(prefix) / "share" / "jupyter"
    for target, path in _files():
        dest = base / target / path.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest)
        os.chmod(dest, 0o644)
        written.append(dest)
    return written


def main() -> int:
    written = install(sys.prefix)
    print(f"lab_files: {len(written)} files in {Path(sys.prefix) / 'share' / 'jupyter'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
