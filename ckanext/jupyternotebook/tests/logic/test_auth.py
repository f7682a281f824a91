"""Who may launch: auth functions called as CKAN calls them."""
from __future__ import annotations

import pytest

import ckan.plugins.toolkit as tk
from ckan import model
from ckan.tests import factories, helpers


def _may_launch(user, dataset, through_the_launch_form=True):
    context = {"user": user["name"] if user else "", "model": model}
    if through_the_launch_form:  # as the launch view marks it after CSRF
        context["jupyternotebook_guest_launch"] = True
    try:
        return helpers.call_auth("jupyternotebook_session_create", context,
                                 id=dataset["id"])
    except tk.NotAuthorized:
        return False


@pytest.mark.usefixtures("clean_db", "with_plugins", "with_request_context")
class TestSessionCreateAuth:
    def test_a_guest_may_launch_a_public_dataset(self):
        assert _may_launch(None, factories.Dataset())

    def test_a_guest_may_not_launch_other_than_through_the_launch_form(self):
        assert not _may_launch(None, factories.Dataset(),
                               through_the_launch_form=False)

    def test_a_user_may_launch_through_the_api(self):
        assert _may_launch(factories.User(), factories.Dataset(),
                           through_the_launch_form=False)

    @pytest.mark.ckan_config("ckanext.jupyternotebook.guest_access", "false")
    def test_a_guest_may_not_launch_when_guest_access_is_off(self):
        assert not _may_launch(None, factories.Dataset())

    def test_a_guest_may_not_launch_a_private_dataset(self):
        org = factories.Organization()
        dataset = factories.Dataset(private=True, owner_org=org["id"])
        assert not _may_launch(None, dataset)

    @pytest.mark.ckan_config("ckanext.jupyternotebook.guest_access", "false")
    def test_a_user_may_launch_when_guest_access_is_off(self):
        assert _may_launch(factories.User(), factories.Dataset())

    def test_a_member_may_launch_a_private_dataset(self):
        user = factories.User()
        org = factories.Organization(
            users=[{"name": user["name"], "capacity": "member"}])
        dataset = factories.Dataset(private=True, owner_org=org["id"])
        assert _may_launch(user, dataset)

    def test_a_non_member_may_not_launch_a_private_dataset(self):
        org = factories.Organization()
        dataset = factories.Dataset(private=True, owner_org=org["id"])
        assert not _may_launch(factories.User(), dataset)


@pytest.mark.usefixtures("clean_db", "with_plugins")
def test_only_sysadmins_may_list_all_sessions():
    user = factories.User()
    with pytest.raises(tk.NotAuthorized):
        helpers.call_auth("jupyternotebook_session_list",
                          {"user": user["name"], "model": model}, all=True)
    assert helpers.call_auth("jupyternotebook_session_list",
                             {"user": user["name"], "model": model})
