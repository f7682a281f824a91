"""Fetch grants: HMAC-signed, naming resource ids, expiring."""
from __future__ import annotations

import pytest


def test_a_fresh_grant_is_valid_for_its_resource():
    from ckanext.jupyternotebook import grants
    grant = grants.sign(["r1"], ttl=60)
    grants.verify(grant, "r1")


def test_a_grant_naming_several_resources_is_valid_for_each():
    from ckanext.jupyternotebook import grants
    grant = grants.sign(["r1", "r2"], ttl=60)
    grants.verify(grant, "r1")
    grants.verify(grant, "r2")


def test_an_expired_grant_is_refused():
    from ckanext.jupyternotebook import grants
    grant = grants.sign(["r1"], ttl=60, now=1000.0)
    grants.verify(grant, "r1", now=1059.0)
    with pytest.raises(grants.InvalidGrant, match="expired"):
        grants.verify(grant, "r1", now=1060.0)


def test_a_grant_for_another_resource_is_refused():
    from ckanext.jupyternotebook import grants
    grant = grants.sign(["r1"], ttl=60)
    with pytest.raises(grants.InvalidGrant, match="other resources"):
        grants.verify(grant, "r2")


def test_a_grant_with_an_edited_payload_is_refused():
    from ckanext.jupyternotebook import grants
    import base64
    import json
    grant = grants.sign(["r1"], ttl=60)
    payload, signature = grant.split(".")
    forged = base64.urlsafe_b64encode(json.dumps(
        {"r": ["r2"], "e": 9999999999}).encode()).rstrip(b"=").decode()
    with pytest.raises(grants.InvalidGrant, match="signature"):
        grants.verify(f"{forged}.{signature}", "r2")


def test_a_grant_signed_with_another_secret_is_refused(monkeypatch):
    import ckan.plugins.toolkit as tk
    from ckanext.jupyternotebook import grants
    monkeypatch.setitem(tk.config, "SECRET_KEY", "some-other-portal")
    foreign = grants.sign(["r1"], ttl=60)
    monkeypatch.undo()
    with pytest.raises(grants.InvalidGrant, match="signature"):
        grants.verify(foreign, "r1")


@pytest.mark.parametrize("grant", [None, "", "garbage", "a.b.c", "é.é"])
def test_a_missing_or_malformed_grant_is_refused(grant):
    from ckanext.jupyternotebook import grants
    with pytest.raises(grants.InvalidGrant):
        grants.verify(grant, "r1")
