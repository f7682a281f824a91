"""A Jupyter Server extension: a kernel that is executing counts as activity.

Jupyter Server moves its ``last_activity`` only when a kernel sends a
message, so a cell that computes silently for an hour (``time.sleep``, a
long model fit) looks idle, and the hub's idle timeout would end the session
under the visitor. While any kernel is busy, this extension keeps a
``busy_kernels_last_activity`` setting current; Jupyter Server counts every
setting whose name ends in ``_last_activity`` (``ServerApp.web_app.
last_activity()``), and JupyterHub's single-user extension reports that
value to the hub.

Imports only Jupyter Server's own dependencies, so the session image can
load it as it is. Enable with
``--ServerApp.jpserver_extensions jupyterhub_service.busy_kernels=True``.
"""

from __future__ import annotations

import datetime as dt

from tornado.ioloop import PeriodicCallback

# Well under the shortest activity interval a deployment uses (30 s), so the
# next activity report after a busy stretch always carries it.
CHECK_EVERY_S = 5
SETTING = "busy_kernels_last_activity"


def _jupyter_server_extension_points():
    return [{"module": "jupyterhub_service.busy_kernels"}]


def any_kernel_busy(kernel_manager) -> bool:
    for kernel_id in kernel_manager.list_kernel_ids():
        kernel = kernel_manager.get_kernel(kernel_id)
        if getattr(kernel, "execution_state", None) == "busy":
            return True
    return False


def _load_jupyter_server_extension(serverapp):
    settings = serverapp.web_app.settings
    kernel_manager = serverapp.kernel_manager

    def mark_busy_kernels():
        if any_kernel_busy(kernel_manager):
            settings[SETTING] = dt.datetime.now(dt.timezone.utc)

    callback = PeriodicCallback(mark_busy_kernels, CHECK_EVERY_S * 1000)
    callback.start()
    # keep a reference for the server's lifetime
    settings["busy_kernels_callback"] = callback
    serverapp.log.info("Busy kernels count as activity (checked every %s s)", CHECK_EVERY_S)
