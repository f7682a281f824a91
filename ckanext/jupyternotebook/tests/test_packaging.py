"""setup.py declares every third-party package the code imports.

A package that is only installed by chance (pulled in by another one, or
present in the developer's venv) breaks a fresh install the day its carrier
drops it: nh3 was imported by the preview and declared nowhere.
"""
from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]

# CKAN is the host of the plugin, and these are parts of its plugin API
# (the request, the CLI, the storage layer, its formatters, its config
# declarations and the plugin migrations' alembic) whose versions CKAN chooses.
PROVIDED_BY_CKAN = {"ckan", "flask", "werkzeug", "click", "file_keeper", "sqlalchemy",
                    "jinja2", "markupsafe", "babel", "yaml", "alembic"}
# our own top-level packages, and the dev stack's helpers the tests import
OWN = {"ckanext", "jupyterhub_service"}

# The CKAN plugin's process also imports this module of the sidecar package.
SHARED_WITH_CKAN = ["jupyterhub_service/guarded_download.py"]
# Run inside a session (python -c), with the session's packages (the
# "session" extra; the image installs the same list), never by the bridge.
SESSION_SIDE = ["jupyterhub_service/report_papermill.py"]


def _setup_requirements() -> tuple[list[str], dict[str, list[str]]]:
    tree = ast.parse((ROOT / "setup.py").read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "setup":
            kw = {k.arg: k.value for k in node.keywords}
            return ast.literal_eval(kw["install_requires"]), ast.literal_eval(kw["extras_require"])
    raise AssertionError("no setup() call in setup.py")


def _distribution_name(requirement: str) -> str:
    name = re.match(r"[A-Za-z0-9._-]+", requirement).group(0)
    return re.sub(r"[-_.]+", "-", name).lower()


def _top_level_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def _third_party(paths: list[Path]) -> dict[str, set[str]]:
    """import name -> the files importing it, for what is neither stdlib nor ours."""
    used: dict[str, set[str]] = {}
    for path in paths:
        for name in _top_level_imports(path):
            if name in sys.stdlib_module_names or name in OWN or name == "__future__":
                continue
            used.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    return used


def _undeclared(used: dict[str, set[str]], declared: set[str], provided: set[str]) -> list[str]:
    dists = importlib.metadata.packages_distributions()
    missing = []
    for name, files in sorted(used.items()):
        if name in provided:
            continue
        candidates = {_distribution_name(d) for d in dists.get(name, [name])}
        if not candidates & declared:
            missing.append(f"{name} (distribution {', '.join(sorted(candidates))}) in {sorted(files)}")
    return missing


def _source_files(package: str) -> list[Path]:
    return [p for p in (ROOT / package).rglob("*.py") if "tests" not in p.relative_to(ROOT).parts]


def test_every_third_party_import_of_the_ckan_plugin_is_in_install_requires():
    install_requires, _extras = _setup_requirements()
    declared = {_distribution_name(r) for r in install_requires}
    files = _source_files("ckanext/jupyternotebook") + [ROOT / p for p in SHARED_WITH_CKAN if (ROOT / p).exists()]
    missing = _undeclared(_third_party(files), declared, PROVIDED_BY_CKAN)
    assert missing == [], "imported but not in install_requires: " + "; ".join(missing)


def test_every_third_party_import_of_the_sidecar_is_in_install_requires_or_the_hub_extra():
    install_requires, extras = _setup_requirements()
    declared = {_distribution_name(r) for r in install_requires + extras["hub"]}
    files = [p for p in _source_files("jupyterhub_service")
             if str(p.relative_to(ROOT)) not in SESSION_SIDE]
    missing = _undeclared(_third_party(files), declared, set())
    assert missing == [], "imported but not declared: " + "; ".join(missing)


def test_every_third_party_import_of_code_run_in_sessions_is_in_the_session_extra():
    _install_requires, extras = _setup_requirements()
    declared = {_distribution_name(r) for r in extras["session"]}
    missing = _undeclared(_third_party([ROOT / p for p in SESSION_SIDE]), declared, set())
    assert missing == [], "imported but not in the session extra: " + "; ".join(missing)


# certifi is the CA list, versioned by date: newer must always be allowed
UNBOUNDED = {"certifi"}


@pytest.mark.parametrize("requirement", [r for r in _setup_requirements()[0]
                                         if _distribution_name(r) not in UNBOUNDED])
def test_every_install_requirement_has_an_upper_bound(requirement):
    # an unpinned major upgrade (soupsieve 4 did it) must not reach a fresh install
    assert "<" in requirement, requirement
