"""The sessions' JupyterLab files reach the environment sessions run from."""

import subprocess
import sys
from pathlib import Path

from jupyterhub_service import lab_files

REPO = Path(__file__).resolve().parents[2]


def test_the_hub_environment_has_the_session_extension_enabled_and_the_overrides():
    # the local spawner's sessions run from this environment: without these
    # the top bar shows no time left and JupyterLab asks about news (make venv
    # runs `python -m jupyterhub_service.lab_files` after its editable install)
    listed = subprocess.run(
        [sys.executable, "-m", "jupyter", "labextension", "list"],
        capture_output=True, text=True, timeout=60)
    lines = [line for line in (listed.stdout + listed.stderr).splitlines()
             if lab_files.EXTENSION in line]
    assert lines and "enabled" in lines[0] and "OK" in lines[0], \
        listed.stdout + listed.stderr
    overrides = (Path(sys.prefix) / "share/jupyter/lab/settings/overrides.d"
                 / "ckanext-jupyternotebook.json")
    assert overrides.read_bytes() == (
        lab_files.SOURCE / "overrides.d" / "ckanext-jupyternotebook.json").read_bytes()


def test_install_copies_every_source_file_under_the_prefix(tmp_path):
    written = lab_files.install(str(tmp_path))
    sources = sorted(p for p in lab_files.SOURCE.rglob("*") if p.is_file())
    assert len(written) == len(sources) == 4
    entry = (tmp_path / "share/jupyter/labextensions" / lab_files.EXTENSION
             / "static/remoteEntry.js")
    assert entry.read_bytes() == (lab_files.SOURCE / lab_files.EXTENSION
                                  / "static/remoteEntry.js").read_bytes()


def test_setup_data_files_name_the_same_files_as_the_installer():
    listed = sorted(f for _target, files in lab_files.data_files(REPO) for f in files)
    sources = sorted(p.relative_to(REPO).as_posix()
                     for p in lab_files.SOURCE.rglob("*") if p.is_file())
    assert listed == sources
