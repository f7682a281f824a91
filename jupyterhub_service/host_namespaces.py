"""Running the host's commands from a hub in a container.

The disk limit (session_disk.py) mounts each session's home image where the
Docker engine sees it, and the egress rules (egress.py) go into the host's
firewall. A hub on the host does both directly. A hub in a container (the
compose stack) does them in the host's namespaces: its container runs with
``pid: host`` and ``privileged: true`` (it already holds the Docker socket,
which is root on the host), and ``JUPYTERNOTEBOOK_ENTER_HOST_NAMESPACES=1``
makes these modules run ``mount``/``umount`` in PID 1's mount namespace and
``iptables`` in its network namespace (``nsenter``), and read the host's
mount table, interfaces and resolvers through ``/proc/1/root``.

Read from the environment at each call, so the hub and the bridge (a
process the hub starts with the same ``JUPYTERNOTEBOOK_*`` variables) agree.
"""

from __future__ import annotations

import os
import subprocess

ENV = "JUPYTERNOTEBOOK_ENTER_HOST_NAMESPACES"


def entered() -> bool:
    """Whether host commands go through PID 1's namespaces."""
    return os.environ.get(ENV, "").strip().lower() in ("1", "true", "yes")


def command(namespace: str, cmd: list[str]) -> list[str]:
    """``cmd`` as it runs in the host's ``net`` or ``mount`` namespace."""
    if namespace not in ("net", "mount"):
        raise ValueError(namespace)
    if not entered():
        return cmd
    return ["nsenter", "--target", "1", f"--{namespace}", "--", *cmd]


def host_path(path: str) -> str:
    """An absolute path of the host's file system as this process reads it
    (``/proc/1/root/...`` from a container in the host's PID namespace)."""
    return f"/proc/1/root{path}" if entered() else path


def mounts_file() -> str:
    """The mount table the Docker engine's bind mounts come from."""
    return "/proc/1/mounts" if entered() else "/proc/self/mounts"


def usable() -> str | None:
    """None when host commands can run here, else why not (checked once at
    hub start: without ``pid: host`` and privileges nsenter fails)."""
    if not entered():
        return None
    try:
        out = subprocess.run(command("net", ["true"]), capture_output=True, text=True,
                             timeout=30)
        out2 = subprocess.run(command("mount", ["true"]), capture_output=True, text=True,
                              timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"nsenter: {e}"
    for r in (out, out2):
        if r.returncode != 0:
            return (f"nsenter into PID 1 failed ({r.stderr.strip()}): the hub container "
                    f"needs pid: host and privileged: true")
    try:
        if os.readlink("/proc/1/ns/net") == os.readlink("/proc/self/ns/net"):
            return None  # on the host after all: nothing to enter, nothing lost
    except OSError as e:
        return f"cannot read /proc/1/ns: {e}"
    return None
