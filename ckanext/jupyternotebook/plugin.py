from __future__ import annotations

from typing import Any

import ckan.plugins as p
import ckan.plugins.toolkit as tk
from ckan.common import CKANConfig
from ckan.lib.plugins import DefaultTranslation

from . import settings
from . import views


@tk.blanket.config_declarations
@tk.blanket.validators
@tk.blanket.actions
@tk.blanket.auth_functions
@tk.blanket.helpers
@tk.blanket.blueprints(views.blueprints)
class JupyterNotebookPlugin(p.SingletonPlugin, DefaultTranslation):
    p.implements(p.IConfigurer)
    p.implements(p.IConfigurable)
    # the notebook view, admin control, CLI and translations
    p.implements(p.IResourceView, inherit=True)
    p.implements(p.ISignal)
    p.implements(p.IClick)
    p.implements(p.ITranslation)
    # reports: "run when the dataset's data changes"
    p.implements(p.IResourceController, inherit=True)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # config_declaration.yaml names our validators. CKAN builds its
        # validator cache once, and may have built it while loading the
        # plugins before this one; rebuilt on the next lookup, it has ours.
        from ckan.logic import clear_validators_cache
        clear_validators_cache()

    # IConfigurer

    def update_config(self, config: CKANConfig) -> None:
        settings.apply_environment(config)
        tk.add_template_directory(config, "templates")
        tk.add_public_directory(config, "public")
        tk.add_resource("assets", "ckanext-jupyternotebook")
        from . import notebook_view
        notebook_view.add_to_default_views(config)

    def update_config_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        schema.update(settings.config_schema())
        return schema

    # IConfigurable

    def configure(self, config: CKANConfig) -> None:
        settings.check(config)

    # ------------------------------------------------------------------
    # the jupyter_notebook resource view, admin settings, CLI

    # IResourceView

    def info(self) -> dict[str, Any]:
        from . import notebook_view
        return notebook_view.info()

    def can_view(self, data_dict: dict[str, Any]) -> bool:
        from . import notebook_view
        return notebook_view.can_view(data_dict)

    def setup_template_variables(self, context: Any,
                                 data_dict: dict[str, Any]) -> dict[str, Any]:
        from . import notebook_view
        return notebook_view.template_variables(context, data_dict)

    def view_template(self, context: Any, data_dict: dict[str, Any]) -> str:
        return "jupyter_notebook/view.html"

    # ISignal

    def get_signal_subscriptions(self) -> dict[Any, Any]:
        from . import subscriptions
        return subscriptions.get_subscriptions()

    # IResourceController

    def after_resource_create(self, context: Any,
                              resource: dict[str, Any]) -> None:
        from .reports import triggers
        triggers.resource_changed(context, resource)

    def after_resource_update(self, context: Any,
                              resource: dict[str, Any]) -> None:
        from .reports import triggers
        triggers.resource_changed(context, resource)

    # IClick

    def get_commands(self) -> list[Any]:
        from . import cli
        return [cli.jupyter]
