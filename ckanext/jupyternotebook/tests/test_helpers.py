"""Template helpers: what the dataset page offers, and durations."""
from __future__ import annotations

import datetime as dt

import pytest

import ckan.plugins.toolkit as tk


# clean_db: settings an admin saved (system_info) outrank ckan.ini, and an
# earlier test may have saved some
@pytest.mark.usefixtures("clean_db", "with_plugins", "with_request_context")
class TestLaunchMode:
    def test_a_guest_may_launch_a_public_dataset(self):
        assert tk.h.jupyternotebook_launch_mode({"private": False}) == "launch"

    def test_a_guest_is_asked_to_log_in_for_a_private_dataset(self):
        assert tk.h.jupyternotebook_launch_mode({"private": True}) == "login"

    @pytest.mark.ckan_config("ckanext.jupyternotebook.guest_access", "false")
    def test_a_guest_is_asked_to_log_in_when_guest_access_is_off(self):
        assert tk.h.jupyternotebook_launch_mode({"private": False}) == "login"


@pytest.mark.usefixtures("with_plugins", "with_request_context")
@pytest.mark.parametrize("seconds, text", [
    (None, ""), (40, "40 seconds"), (60, "1 minute"), (300, "5 minutes"),
    (3600, "1 hour"), (7200, "2 hours")])
def test_duration_reads_naturally(seconds, text):
    assert tk.h.jupyternotebook_duration(seconds) == text


@pytest.mark.usefixtures("with_plugins")
def test_seconds_left_of_a_past_expiry_is_zero():
    past = (dt.datetime.now(dt.timezone.utc)
            - dt.timedelta(minutes=5)).isoformat()
    assert tk.h.jupyternotebook_seconds_left(past) == 0


@pytest.mark.usefixtures("with_plugins")
def test_seconds_left_reads_a_z_suffixed_time():
    soon = (dt.datetime.now(dt.timezone.utc)
            + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert 3500 < tk.h.jupyternotebook_seconds_left(soon) <= 3600
