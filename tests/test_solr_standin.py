"""The Solr stand-in of dev/ answers as CKAN needs (dev and tests only)."""
from __future__ import annotations

import pytest
import requests

from dev import solr_standin


@pytest.fixture
def solr():
    server = solr_standin.start_in_thread(0)
    yield f"http://127.0.0.1:{server.server_address[1]}/solr/ckan"
    server.shutdown()
    server.server_close()


def test_a_query_has_no_hits_and_an_empty_list_per_facet_field(solr):
    answer = requests.get(f"{solr}/select", params=[
        ("q", "*:*"), ("wt", "json"), ("facet", "true"),
        ("facet.field", "tags"), ("facet.field", "res_format")], timeout=5)
    body = answer.json()
    assert body["response"] == {"numFound": 0, "start": 0,
                                "numFoundExact": True, "docs": []}
    assert body["facet_counts"]["facet_fields"] == {"tags": [],
                                                    "res_format": []}


def test_a_long_query_posted_as_a_form_gets_its_facets(solr):
    answer = requests.post(f"{solr}/select", data={
        "q": "x" * 2000, "facet.field": ["organization"], "wt": "json"},
        timeout=5)
    assert answer.json()["facet_counts"]["facet_fields"] == {
        "organization": []}


def test_updates_are_accepted(solr):
    answer = requests.post(f"{solr}/update/?commit=true",
                           data=b"<add><doc/></add>",
                           headers={"Content-Type": "text/xml"}, timeout=5)
    assert answer.status_code == 200


def test_the_schema_names_a_ckan_version_ckan_supports(solr):
    from ckan.lib.search import SUPPORTED_SCHEMA_VERSIONS
    schema = requests.get(f"{solr}/schema?wt=schema.xml", timeout=5).text
    # ckan-2.11: the newest schema CKAN 2.10, 2.11 and 2.12 all accept
    assert 'name="ckan-2.11"' in schema
    assert "2.11" in SUPPORTED_SCHEMA_VERSIONS
