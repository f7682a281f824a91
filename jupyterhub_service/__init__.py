"""The JupyterHub side of ckanext-jupyternotebook: the bridge service, the
ticket authenticator and the session spawners."""

__version__ = "0.1.0"
