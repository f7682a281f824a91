"""The API document names every report-run route the bridge serves."""

import json
import re
from pathlib import Path

from jupyterhub_service.report_api import ROUTES

OPENAPI = json.loads((Path(__file__).parents[1] / "openapi.json").read_text())


def test_every_run_route_and_method_is_in_the_openapi_document():
    names = iter(["id", "name"])
    for pattern, handler in ROUTES:
        path = re.sub(r"\(\[\^/\]\+\)", lambda _m: "{" + next(names) + "}", pattern)
        names = iter(["id", "name"])
        assert path in OPENAPI["paths"], path
        served = {m for m in ("get", "post", "delete", "put") if m in vars(handler)}
        assert served == set(OPENAPI["paths"][path]) - {"parameters"}, path
