"""WSGI entry point for serving CKAN with gunicorn in the dev stack.

``CKAN_INI`` names the config file, as for the ``ckan`` command.
"""

import os

from ckan.cli import CKANConfigLoader
from ckan.config.middleware import make_app

application = make_app(CKANConfigLoader(os.environ["CKAN_INI"]).get_config())
