"""A bare JupyterHub for the comparison spawns: the same spawner class and
spawner settings as the product's hub config, no bridge, no ticket
authenticator; the benchmark spawns through the REST API with a service
token holding admin scopes.

Run only by ``benchmarks/run.py``, which sets the BENCH_* variables.
"""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

c = get_config()  # noqa: F821
env = os.environ
state = Path(env["BENCH_BARE_STATE"])
state.mkdir(parents=True, exist_ok=True)

c.JupyterHub.bind_url = f"http://127.0.0.1:{env['BENCH_BARE_PORT']}/"
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = int(env["BENCH_BARE_API_PORT"])
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{env['BENCH_BARE_PROXY_API_PORT']}"
c.ConfigurableHTTPProxy.command = ["/usr/bin/configurable-http-proxy"]
c.JupyterHub.db_url = f"sqlite:///{state / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(state / "jupyterhub_cookie_secret")
c.JupyterHub.pid_file = str(state / "jupyterhub.pid")

c.JupyterHub.authenticator_class = "null"
c.Authenticator.allow_all = True
c.JupyterHub.services = [{"name": "bench", "api_token": env["BENCH_HUB_TOKEN"]}]
c.JupyterHub.load_roles = [{
    "name": "bench",
    "scopes": ["admin:users", "servers", "access:servers"],
    "services": ["bench"],
}]

# the same server settings as jupyterhub_service/jupyterhub_config.py
c.JupyterHub.allow_named_servers = True
c.JupyterHub.named_server_limit_per_user = 0
c.JupyterHub.concurrent_spawn_limit = 50
c.JupyterHub.active_server_limit = 0
c.JupyterHub.last_activity_interval = 30
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = int(env.get("BENCH_BARE_HTTP_TIMEOUT", "90"))
c.Spawner.default_url = "/lab"
c.Spawner.environment = {"JUPYTERHUB_ACTIVITY_INTERVAL": "30"}

if env.get("BENCH_BARE_SPAWNER", "local") == "local":
    c.JupyterHub.spawner_class = "jupyterhub_service.spawners.SessionLocalSpawner"
    c.SessionLocalSpawner.session_user = env["BENCH_SESSION_USER"]
    c.SessionLocalSpawner.sessions_root = env["BENCH_SESSIONS_ROOT"]
    c.Spawner.cmd = [str(Path(sys.executable).with_name("jupyterhub-singleuser"))]
else:
    from jupyterhub_service import settings as settings_module
    from jupyterhub_service.docker_spawner import docker_spawner_config

    docker_spawner_config(c, settings_module.load())
