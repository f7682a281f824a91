"""Running the host's commands from a hub in a container.

The disk limit (session_disk.py) mounts each session's home image where the
Docker engine sees it, and the egress rules (egress.py) go into the host's
firewall. A hub on the host does both directly. A hub in a container (the
compose stack) does them in the Docker engine's namespaces: its container
shares the host's PID namespace (``pid: host``) with the capabilities this
needs (``SYS_ADMIN``, ``NET_ADMIN``, ``SYS_PTRACE``, loop devices; it
already holds the Docker socket, which is root on the host), and
``JUPYTERNOTEBOOK_ENTER_HOST_NAMESPACES=1`` makes these modules run
``mount``/``umount`` in the engine's mount namespace and ``iptables`` in its
network namespace (``nsenter``), and read its mount table, interfaces and
resolvers through ``/proc/<pid>/root``. The engine's process (``dockerd``)
is the target, not PID 1: its mount namespace is where the bind mounts of
the sessions come from (and some hosts refuse entering PID 1's).
``JUPYTERNOTEBOOK_HOST_PID`` names another process.

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


def target_pid() -> int:
    """The process whose namespaces are entered: JUPYTERNOTEBOOK_HOST_PID,
    else the Docker engine's (``dockerd``), else 1."""
    given = os.environ.get("JUPYTERNOTEBOOK_HOST_PID", "").strip()
    if given.isdigit():
        return int(given)
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/comm") as f:
                    if f.read().strip() == "dockerd":
                        return int(entry.name)
            except OSError:
                continue
    return 1


def command(namespace: str, cmd: list[str]) -> list[str]:
    """``cmd`` as it runs in the host's ``net`` or ``mount`` namespace."""
    if namespace not in ("net", "mount"):
        raise ValueError(namespace)
    if not entered():
        return cmd
    return ["nsenter", "--target", str(target_pid()), f"--{namespace}", "--", *cmd]


def host_path(path: str) -> str:
    """An absolute path of the host's file system as this process reads it
    (``/proc/<pid>/root/...`` from a container in the host's PID namespace)."""
    return f"/proc/{target_pid()}/root{path}" if entered() else path


def mounts_file() -> str:
    """The mount table the Docker engine's bind mounts come from."""
    return f"/proc/{target_pid()}/mounts" if entered() else "/proc/self/mounts"


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
            return (f"nsenter into process {target_pid()} failed ({r.stderr.strip()}): the "
                    f"hub container needs pid: host, SYS_ADMIN, NET_ADMIN and SYS_PTRACE "
                    f"(docker-compose.yml)")
    return None
