"""The labels every session container (or swarm service) carries, to find
it again: the pool's claim, orphan removal, the tests."""

LABEL_HUB_USER = "org.ckan.jupyternotebook.hub-user"
LABEL_SERVER = "org.ckan.jupyternotebook.server"
LABEL_SESSION = "org.ckan.jupyternotebook.session"
