"""JupyterHub configuration for ckanext-jupyternotebook.

Run as ``jupyterhub -f jupyterhub_service/jupyterhub_config.py``. Every value
comes from ``jupyterhub_service.settings`` (the environment); nothing here
reads the environment itself.
"""

import sys
from pathlib import Path

from jupyterhub_service import settings as settings_module

c = get_config()  # noqa: F821 (provided by JupyterHub)
s = settings_module.load()

HERE = Path(__file__).resolve().parent
state = s.state_dir
state.mkdir(parents=True, exist_ok=True)
base = s.hub_base_url.rstrip("/") + "/"

# -- where things listen ----------------------------------------------------
c.JupyterHub.bind_url = (s.hub_bind_url or s.hub_url).rstrip("/") + base
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = s.hub_port
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{s.proxy_api_port}"
# Debian's node-configurable-http-proxy; always by absolute path
c.ConfigurableHTTPProxy.command = ["/usr/bin/configurable-http-proxy"]
c.JupyterHub.db_url = f"sqlite:///{state / 'jupyterhub.sqlite'}"
# a hub upgraded to a new major (5 -> 6) migrates its database at start,
# keeping a dated copy of the old file beside it
c.JupyterHub.upgrade_db = True
c.JupyterHub.cookie_secret_file = str(state / "jupyterhub_cookie_secret")
c.JupyterHub.pid_file = str(state / "jupyterhub.pid")

# -- who gets in: one-time launch tickets only ------------------------------
c.JupyterHub.authenticator_class = "jupyterhub_service.authenticator.TicketAuthenticator"
c.TicketAuthenticator.ticket_secret = s.api_token
c.TicketAuthenticator.bridge_db_url = s.bridge_db_url
c.Authenticator.allow_all = True
# A login lasts as long as its user's latest live session, whatever
# `timeout` is changed to at run time: the authenticator's refresh_user ends
# it once the bridge's store has no live session for the user (checked every
# auth_refresh_age seconds). The cookie and OAuth token lifetimes are only a
# ceiling, longer than any session can last: the highest `timeout` or
# `max_extended_age` the admin page accepts at run time, so an extended
# session's login never dies at its old end (issue 13).
LOGIN_CEILING_S = max(s.timeout, s.max_extended_age, 24 * 3600,
                      settings_module.TABLE["timeout"].high,
                      settings_module.TABLE["max_extended_age"].high)
c.TicketAuthenticator.auth_refresh_age = 10
c.JupyterHub.cookie_max_age_days = LOGIN_CEILING_S / 86400
c.JupyterHub.oauth_token_expires_in = LOGIN_CEILING_S

# -- roles: every spawn goes through the bridge's caps ----------------------
BRIDGE_SCOPES = ["admin:users", "servers", "access:servers", "tokens"]
c.JupyterHub.load_roles = [
    # Users may use their own servers, never start or stop one (no
    # `servers` scope). A server's own token holds at most its user's
    # scopes, so the user keeps `users:activity!user`: without it servers
    # cannot report activity and busy sessions would look idle.
    {
        "name": "user",
        "scopes": [
            "access:servers!user",
            "read:users:name!user",
            "read:users:groups!user",
            "users:activity!user",
            # the session's countdown, Extend, Download and Save to portal
            # (the bridge's visitor routes, user_routes.py): each acts only
            # on the caller's own sessions
            "access:services!service=bridge",
        ],
    },
    # The bridge creates and deletes users, starts and stops their servers
    # and waits on them. `tokens`: to read a session's files where it cannot
    # from its host, it mints a short-lived token owned by the session's
    # user for that one server and deletes it after the read
    # (session_server_files.py); its own token never goes to a session.
    {
        "name": "bridge",
        "scopes": BRIDGE_SCOPES,
        "services": ["bridge"],
    },
]

# -- the bridge, a managed service on its own port --------------------------
# Its `url` makes the proxy route /services/bridge/ to it: the visitor's
# routes (user_routes.py, OAuth-authenticated), which the bridge serves on a
# port of their own; the internal /api/... is never behind the proxy.
c.JupyterHub.services = [
    {
        "name": "bridge",
        "command": [sys.executable, "-m", "jupyterhub_service.bridge"],
        "environment": settings_module.service_environment(),
        "url": s.visitor_url,
        "oauth_no_confirm": True,
        "display": False,
    }
]

# -- servers ----------------------------------------------------------------
c.JupyterHub.allow_named_servers = True
c.JupyterHub.named_server_limit_per_user = 0  # the bridge enforces the caps
c.JupyterHub.concurrent_spawn_limit = 50
c.JupyterHub.active_server_limit = 0
c.JupyterHub.last_activity_interval = 30
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 90
c.Spawner.default_url = "/lab"
c.Spawner.environment = {"JUPYTERHUB_ACTIVITY_INTERVAL": "30"}
# a kernel that is executing counts as activity (see busy_kernels.py); the
# session image carries the module too
c.Spawner.args = ["--ServerApp.jpserver_extensions", "jupyterhub_service.busy_kernels=True"]



def _session_options(spawner, options):
    """user_options come only from the bridge (users cannot spawn); the
    session spawners read them when they start."""


c.Spawner.apply_user_options = _session_options

if s.spawner == "local":
    c.JupyterHub.spawner_class = "jupyterhub_service.spawners.SessionLocalSpawner"
    # Jupyter Server asks for confirmation on SIGINT; go on to SIGTERM soon
    c.LocalProcessSpawner.interrupt_timeout = 1
    # JupyterHub 6 waits 30 s after SIGTERM by default (5.x: 5 s); a session
    # server that ignores it is killed as soon on either
    c.LocalProcessSpawner.term_timeout = 5
    c.SessionLocalSpawner.session_user = s.session_user
    c.SessionLocalSpawner.sessions_root = str(s.storage_root / "sessions")
    c.Spawner.cmd = [str(Path(sys.executable).with_name("jupyterhub-singleuser"))]
else:
    from jupyterhub_service.docker_spawner import docker_spawner_config

    docker_spawner_config(c, s)
    # session containers outlive a hub restart or upgrade: the hub leaves
    # them running and finds them again from each spawner's saved state;
    # the bridge ends only sessions whose server is really gone
    c.JupyterHub.cleanup_servers = False

# -- pages ------------------------------------------------------------------
c.JupyterHub.template_paths = [str(HERE / "templates")]
