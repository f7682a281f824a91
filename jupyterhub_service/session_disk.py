"""A session's home on a filesystem of its own size: an ext4 image file of
``disk_limit`` bytes, loop-mounted on the host and bind-mounted into the
container as the home.

Why not the alternatives: ``--storage-opt size`` is refused by this engine's
fuse-overlayfs driver, and a tmpfs home is charged to the container's memory
cgroup (a 2G tmpfs under a 1G memory limit gets the session OOM-killed).
With the container's root filesystem read-only and a small tmpfs at /tmp,
the home is the only place a session can write, so a full home is ENOSPC
for the session and nothing for the host or the other sessions.

The image file is sparse: it takes on the host only what the session wrote,
and is deleted at stop. It is made complete before it is mounted (``mkfs
-d`` with the skeleton), so nothing is written through the mount: a hub in
a container mounts it in the host's mount namespace, where the Docker engine
sees it (host_namespaces.py), and never sees the mount itself. Blocking
(subprocess, mount); callers use an executor. Needs root and loop devices.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from . import host_namespaces

log = logging.getLogger(__name__)

#: session ids are the bridge's (hex or uuid-like); anything else is refused
#: as a file name
KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
IMAGE_SUFFIX = ".ext4"
#: the homes' directory under the storage root
HOMES_DIR = "session-homes"


class DiskError(RuntimeError):
    """The home image could not be created or removed."""


class SessionHome:
    """``<root>/<key>.ext4`` mounted on ``<root>/<key>/``."""

    def __init__(self, root: str | Path, key: str):
        if not KEY.match(key or ""):
            raise DiskError(f"not a usable session key: {key!r}")
        self.root = Path(root)
        self.key = key
        self.image = self.root / f"{key}{IMAGE_SUFFIX}"
        self.mountpoint = self.root / key

    def create(self, size: int, owner: tuple[int, int] = (1000, 100),
               skeleton: tuple[str, ...] = ()) -> str:
        """Make, mount and hand over the filesystem; returns the mount point.

        ``skeleton``: directories to create in it for the owner (the user
        site-packages, so that a kernel started before the first ``pip
        install`` already has it on ``sys.path``)."""
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o711)
        self.remove()  # a leftover of a crash under the same key
        try:
            with open(self.image, "wb") as f:
                f.truncate(size)
            # a dot name: never taken for a session's key by session_keys()
            with tempfile.TemporaryDirectory(prefix=".skeleton-", dir=self.root) as tree:
                for rel in skeleton:
                    path = Path(tree)
                    for part in Path(rel).parts:
                        path = path / part
                        path.mkdir(exist_ok=True)
                        os.chown(path, *owner)
                os.chown(tree, *owner)
                os.chmod(tree, 0o755)
                # no journal, no reserved blocks: a throw-away home needs
                # neither, and every block of the limit is the session's
                _run(["mkfs.ext4", "-q", "-F", "-m", "0", "-O", "^has_journal",
                      "-E", f"root_owner={owner[0]}:{owner[1]}", "-d", tree,
                      str(self.image)])
            _run(["debugfs", "-w", "-R", "rmdir lost+found", str(self.image)])
            self.mountpoint.mkdir(mode=0o700, exist_ok=True)
            _run(host_namespaces.command("mount", [
                "mount", "-t", "ext4", "-o", "loop,nosuid,nodev", str(self.image),
                str(self.mountpoint)]))
        except Exception:
            self.remove()
            raise
        return str(self.mountpoint)

    def mounted(self) -> bool:
        return str(self.mountpoint) in mount_points()

    def remove(self, attempts: int = 5) -> list[str]:
        """Unmount and delete; returns what was removed. The container must
        be gone; if the mount is still busy after a few tries it is detached
        lazily (it goes when its last user does) and the files go anyway."""
        removed = []
        for attempt in range(attempts):
            if not self.mounted():
                break
            if _run(host_namespaces.command("mount", ["umount", str(self.mountpoint)]),
                    check=False).returncode == 0:
                removed.append(f"mount {self.mountpoint}")
                break
            time.sleep(0.2 * (attempt + 1))
        else:
            log.warning("home %s still busy: detaching lazily", self.mountpoint)
            _run(host_namespaces.command("mount", ["umount", "-l", str(self.mountpoint)]))
            removed.append(f"mount {self.mountpoint}")
        if self.mountpoint.is_dir() and not self.mounted():
            # empty when unmounted; never follow what a session could have put there
            shutil.rmtree(self.mountpoint)
            removed.append(str(self.mountpoint))
        if self.image.exists():
            self.image.unlink()
            removed.append(str(self.image))
        return removed


def mount_points() -> set[str]:
    """Mount points of the namespace the homes are mounted in (this one, or
    the host's from a hub in a container), octal escapes decoded."""
    points = set()
    with open(host_namespaces.mounts_file()) as f:
        for line in f:
            fields = line.split()
            if len(fields) > 1:
                points.add(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[1]))
    return points


def session_keys(root: str | Path) -> set[str]:
    """Keys that have an image, a directory or a mount under ``root``."""
    root = Path(root)
    keys = set()
    if root.is_dir():
        for entry in root.iterdir():
            name = entry.name[: -len(IMAGE_SUFFIX)] if entry.name.endswith(IMAGE_SUFFIX) else entry.name
            if KEY.match(name):
                keys.add(name)
    prefix = str(root) + "/"
    for point in mount_points():
        if point.startswith(prefix) and "/" not in point[len(prefix):]:
            keys.add(point[len(prefix):])
    return keys


def _run(cmd: list[str], check: bool = True):
    # named by the command itself, not by an nsenter in front of it
    name = cmd[cmd.index("--") + 1:] if "--" in cmd else cmd
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise DiskError(f"{name[0]}: {e}") from None
    if check and out.returncode != 0:
        raise DiskError(f"{' '.join(name[:2])} failed ({out.returncode}): {out.stderr.strip()}")
    return out
