"""Hub config for the simulated-scale benchmark: the product's config, with
the no-op spawner and a benchmark service token.

Run only by ``benchmarks/run.py``. The bridge's spawner-specific preparation
(session homes, chown) still runs, because the bridge still believes the
spawner is ``local``.
"""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

load_subconfig(str(ROOT / "jupyterhub_service" / "jupyterhub_config.py"))  # noqa: F821
c = get_config()  # noqa: F821

from benchmarks.noop_spawner import NoopSpawner  # noqa: E402

c.JupyterHub.spawner_class = NoopSpawner
c.NoopSpawner.status_port = int(os.environ["BENCH_NOOP_STATUS_PORT"])
# no-op spawns cost nothing: let the bridge's own limits be what is measured
c.JupyterHub.concurrent_spawn_limit = 0
# 1,000 sessions: do not let the hub's activity bookkeeping dominate
c.JupyterHub.last_activity_interval = 300

# a service with admin scopes, for bare hub REST spawns of the same spawner
c.JupyterHub.services.append({"name": "bench", "api_token": os.environ["BENCH_HUB_TOKEN"]})
c.JupyterHub.load_roles.append({
    "name": "bench",
    "scopes": ["admin:users", "servers", "access:servers"],
    "services": ["bench"],
})
