import runpy
from pathlib import Path

from setuptools import find_packages, setup

# The sessions' JupyterLab extension (plain JavaScript, ready to load) and
# the settings overrides that turn off first-use prompts, placed in the
# environment's share/jupyter by a wheel install; an editable install leaves
# data_files out, so `make venv` runs `python -m jupyterhub_service.lab_files`
# (the one list of these files).
_HERE = Path(__file__).resolve().parent
LAB_DATA_FILES = runpy.run_path(
    str(_HERE / "jupyterhub_service" / "lab_files.py"))["data_files"](_HERE)

setup(
    name="ckanext-jupyternotebook",
    version="0.1.0",
    description="Open any CKAN dataset as a live, throw-away JupyterLab session",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="AGPL-3.0-or-later",
    python_requires=">=3.10",
    packages=find_packages(exclude=["tests", "tests.*", "dev", "benchmarks"]),
    include_package_data=True,
    data_files=LAB_DATA_FILES,
    package_data={
        "ckanext.jupyternotebook": [
            "config_declaration.yaml",
            "templates/**/*",
            "assets/**/*",
            "public/**/*",
            "i18n/**/*",
            "migration/**/*",
        ],
        "jupyterhub_service": ["templates/*", "openapi.json"],
    },
    install_requires=[
        # the CKAN plugin
        "requests>=2.31,<3",
        "nbformat>=5.9,<6",
        "nbconvert>=7.16,<8",
        # nbconvert's HTML export selects with BeautifulSoup; soupsieve 4.x
        # fails to compile any selector on Debian 12's Python 3.11.2
        "soupsieve>=2.5,<4",
        # the preview's sanitizer and its code highlighting styles
        "nh3>=0.2.15,<0.4",
        "Pygments>=2.15,<3",
        # the preview's in-memory LRU of rendered pages
        "cachetools>=5.3,<9",
        # report schedules: cron expressions (pallets-eco's croniter; RQ,
        # which CKAN uses, depends on it too)
        "croniter>=1.3,<7",
        # the guarded downloader (jupyterhub_service.guarded_download), which
        # the preview shares with the bridge
        "urllib3>=2.3,<3",
        "certifi>=2023.7.22",
    ],
    extras_require={
        # the JupyterHub sidecar (hub, bridge, spawners)
        "hub": [
            "jupyterhub>=5.3,<7",
            "jupyterlab>=4.2,<5",
            "SQLAlchemy>=2.0,<2.1",
            "tornado>=6.4,<7",
            "traitlets>=5.9,<6",
            "dockerspawner>=14,<15",
            "docker>=7,<8",
        ],
        # what sessions use beyond JupyterLab (start_here.ipynb loads CSV/TSV,
        # Excel, JSON and Parquet); the local spawner runs sessions from the
        # hub's environment, the docker image installs the same list
        "session": [
            "pandas>=2.1,<4",
            "openpyxl>=3.1,<4",
            "pyarrow>=15",
            # report runs execute the notebook inside the session (report_runs)
            "papermill>=2.6,<3",
        ],
    },
    entry_points={
        "ckan.plugins": [
            "jupyternotebook = ckanext.jupyternotebook.plugin:JupyterNotebookPlugin",
        ],
        "babel.extractors": [
            "ckan = ckan.lib.extract:extract_ckan",
        ],
        "jupyterhub.authenticators": [
            "ticket = jupyterhub_service.authenticator:TicketAuthenticator",
        ],
        "jupyterhub.spawners": [
            "session-local = jupyterhub_service.spawners:SessionLocalSpawner",
        ],
    },
)
