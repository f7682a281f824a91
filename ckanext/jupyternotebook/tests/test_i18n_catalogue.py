"""The message catalogue follows the code: every string a visitor or admin
sees is in the .pot translators work from (babel.cfg says how to refresh)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from babel.messages.pofile import read_po

PACKAGE = Path(__file__).resolve().parents[1]
REPO = PACKAGE.parents[1]
POT = PACKAGE / "i18n" / "ckanext-jupyternotebook.pot"


def _ids(path: Path) -> set:
    with path.open("rb") as f:
        return {m.id for m in read_po(f) if m.id}


def test_the_pot_holds_every_translatable_string_of_the_code(tmp_path):
    fresh = tmp_path / "fresh.pot"
    subprocess.run(
        [sys.executable, "-m", "babel.messages.frontend", "extract", "-F", "babel.cfg",
         "-k", "_", "-k", "ungettext:1,2", "--ignore-dirs=tests",
         "-o", str(fresh), "ckanext/jupyternotebook"],
        cwd=REPO, check=True, capture_output=True, timeout=120)
    missing = _ids(fresh) - _ids(POT)
    assert not missing, (
        f"{len(missing)} strings are not in {POT.name}; refresh it as babel.cfg says: "
        + "; ".join(sorted(str(m) for m in missing)[:10]))
