"""The API document says what the bridge really serves."""

import json
from pathlib import Path

from jupyterhub_service.settings import RUNTIME_KEYS

OPENAPI = json.loads((Path(__file__).parents[1] / "openapi.json").read_text())


def test_the_settings_schema_names_every_runtime_setting():
    documented = set(OPENAPI["components"]["schemas"]["Settings"]["properties"])
    assert set(RUNTIME_KEYS) <= documented, set(RUNTIME_KEYS) - documented
