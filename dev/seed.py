"""Seed the dev portal: a sysadmin, a demo organization and a public dataset
holding an uploaded CSV and an uploaded notebook. Idempotent.

    .venv/bin/python dev/seed.py --config .dev/ckan.ini [--password PW]

Prints one JSON object on stdout:
{"sysadmin": ..., "password": ..., "api_token": ..., "dataset": ...}
The password is generated once and kept (next to the config, mode 0600);
each run issues a fresh API token and revokes the previous seed token.
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEMO = HERE / "demo"

SYSADMIN = "admin"
ORG = "demo-org"
DATASET = "demo-dataset"
TOKEN_NAME = "dev-stack"
FILES = [
    # (file, resource name, format, description)
    ("cities.csv", "cities.csv", "CSV",
     "Population and position of some large cities."),
    ("explore.ipynb", "explore.ipynb", "ipynb",
     "A notebook that loads and explores cities.csv."),
]


def _password(config_path: Path, given: str | None) -> str:
    stored = config_path.parent / "admin-password"
    if given:
        password = given
    elif stored.exists():
        password = stored.read_text().strip()
    else:
        password = secrets.token_urlsafe(12)
    stored.write_text(password + "\n")
    stored.chmod(0o600)
    return password


def _stored(resource: dict) -> bool:
    """Whether CKAN's storage really holds the resource's file."""
    from ckan.lib import uploader

    from ckanext.jupyternotebook.compat import files, keeper_storage

    upload = uploader.get_resource_uploader(resource)
    path = upload.get_path(resource["id"])
    storage = keeper_storage(upload)
    if storage is not None:
        try:
            return storage.size(files.Location(path)) > 0
        except Exception:
            return False
    return os.path.isfile(path)


def seed(password: str) -> dict:
    import ckan.model as model
    import ckan.plugins.toolkit as tk
    from werkzeug.datastructures import FileStorage

    site_user = tk.get_action("get_site_user")({"ignore_auth": True}, {})
    as_site = lambda: {"user": site_user["name"], "ignore_auth": True}

    user = model.User.get(SYSADMIN)
    if user is None:
        tk.get_action("user_create")(as_site(), {
            "name": SYSADMIN, "email": "admin@example.org",
            "password": password, "fullname": "Demo Admin"})
        user = model.User.get(SYSADMIN)
    elif not user.validate_password(password):
        user.password = password
    user.sysadmin = True
    user.state = "active"
    model.Session.commit()

    as_admin = lambda: {"user": SYSADMIN}

    try:
        tk.get_action("organization_show")(as_admin(), {"id": ORG})
    except tk.ObjectNotFound:
        tk.get_action("organization_create")(as_admin(), {
            "name": ORG, "title": "Demo Organization",
            "description": "Demo data for the notebook sidecar."})

    try:
        dataset = tk.get_action("package_show")(as_admin(), {"id": DATASET})
    except tk.ObjectNotFound:
        dataset = tk.get_action("package_create")(as_admin(), {
            "name": DATASET, "title": "Demo dataset: world cities",
            "owner_org": ORG, "private": False,
            "notes": "A small CSV and a notebook to open in Jupyter.",
            "license_id": "cc-by"})
    if dataset.get("private"):
        dataset = tk.get_action("package_patch")(
            as_admin(), {"id": dataset["id"], "private": False})

    present = {r["name"]: r for r in dataset.get("resources", [])
               if r.get("url_type") == "upload"}
    for filename, name, fmt, description in FILES:
        resource = present.get(name)
        if resource and _stored(resource):
            continue
        with open(DEMO / filename, "rb") as stream:
            upload = FileStorage(stream=stream, filename=filename)
            if resource:
                # the database survived but the storage directory did not
                tk.get_action("resource_patch")(as_admin(), {
                    "id": resource["id"], "upload": upload})
            else:
                tk.get_action("resource_create")(as_admin(), {
                    "package_id": dataset["id"], "name": name,
                    "format": fmt, "description": description,
                    "url": filename, "upload": upload})

    for token in tk.get_action("api_token_list")(
            as_admin(), {"user_id": SYSADMIN}):
        if token.get("name") == TOKEN_NAME:
            tk.get_action("api_token_revoke")(as_admin(), {"jti": token["id"]})
    token = tk.get_action("api_token_create")(
        as_admin(), {"user": SYSADMIN, "name": TOKEN_NAME})["token"]

    return {"sysadmin": SYSADMIN, "password": password,
            "api_token": token, "dataset": DATASET}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="the CKAN ini file")
    parser.add_argument("--password", help="the sysadmin's password "
                        "(default: generated once, then kept)")
    args = parser.parse_args()
    config_path = Path(args.config).resolve()

    from ckan.cli import load_config
    from ckan.config.middleware import make_app

    # CKAN logs to stdout in some configs; keep stdout for the JSON answer.
    real_stdout = sys.stdout
    sys.stdout = sys.stderr
    try:
        app = make_app(load_config(str(config_path)))
        flask_app = getattr(app, "_wsgi_app", app)
        with flask_app.test_request_context():
            result = seed(_password(config_path, args.password))
    finally:
        sys.stdout = real_stdout
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
