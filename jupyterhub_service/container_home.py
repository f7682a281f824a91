"""A session container's home on an image file of its own size
(session_disk.py): the container spawners' side of it.

The home is made before the container starts and removed once the engine has
removed the container (until then the container holds the mount). Its key
is kept in the spawner's state, so a restarted hub still removes it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from traitlets import Bool, Unicode, default
from traitlets.config import Configurable

from .session_disk import HOMES_DIR, KEY, SessionHome


class ContainerHomeMixin(Configurable):
    """For a DockerSpawner with ``session_id``, ``host_storage_root`` and
    ``home_mount``: the home image's settings, its life, and the read-only
    root filesystem that makes it the only place a session writes to."""

    home_on_image = Bool(
        False, config=True,
        help="""Give each session a home of its own size (``disk_limit``): an
        ext4 image file loop-mounted on the host under ``homes_root``, with a
        read-only root filesystem and a small tmpfs at /tmp. Needs the hub on
        the Docker host, as root.""",
    )

    homes_root = Unicode(
        config=True,
        help="Host directory holding the home images (default: <host_storage_root>/session-homes).",
    )

    @default("homes_root")
    def _default_homes_root(self):
        return str(Path(self.host_storage_root or "/var/lib/ckan-jupyter") / HOMES_DIR)

    tmp_size = Unicode("64M", config=True, help="Size of the tmpfs at /tmp (charged to memory).")

    user_site = Unicode(
        ".local/lib/python3.11/site-packages", config=True,
        help="""The image's user site-packages, relative to the home: created in
        every fresh home so that ``pip install`` goes there (the image's venv
        is read-only) and a running kernel imports it at once.""",
    )

    # the current session's, set by map_user_options
    home_key = ""
    disk_limit = 0

    def _home_key(self) -> str:
        """The home's name: the session id, which the reconciler knows. A
        home under any other name would be an orphan to it, removed under
        the running session at its next pass, so there is none."""
        if not KEY.match(self.session_id):
            raise ValueError(f"session id {self.session_id!r} cannot name a home "
                             "(letters, digits, '.', '_', '-'; not starting with '.', '_', '-')")
        return self.session_id

    def home(self) -> SessionHome:
        return SessionHome(self.homes_root, self.home_key)

    def home_environment(self) -> dict:
        if not self.home_on_image:
            return {}
        # the venv is on the read-only root: installs go to the home
        return {"PIP_USER": "1", "PYTHONUSERBASE": f"{self.home_mount}/.local"}

    def read_only_root(self) -> dict:
        """Host config that leaves the home the only place a session writes
        to disk (nothing without a home image)."""
        if not self.home_on_image:
            return {}
        return {"read_only": True,
                "tmpfs": {"/tmp": f"size={self.tmp_size},mode=1777,nosuid,nodev"}}

    async def create_home(self) -> None:
        home = self.home()
        await asyncio.get_running_loop().run_in_executor(
            None, lambda: home.create(self.disk_limit, skeleton=(self.user_site,)))

    async def remove_home(self) -> None:
        if not getattr(self, "home_key", ""):
            return
        home = self.home()
        await asyncio.get_running_loop().run_in_executor(None, home.remove)

    async def _wait_container_gone(self, timeout: float = 30) -> None:
        """The container holds the home's mount until the engine has removed
        it (``auto_remove`` may still be at it)."""
        import docker

        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            try:
                await self.docker("inspect_container", self.object_name)
            except docker.errors.NotFound:
                return
            await asyncio.sleep(0.2)
        self.log.warning("container %s still there after %ss", self.object_name, timeout)

    def get_state(self):
        state = super().get_state()
        if getattr(self, "home_key", "") and self.home_on_image:
            state["home_key"] = self.home_key
        return state

    def load_state(self, state):
        super().load_state(state)
        if state.get("home_key"):
            self.home_key = state["home_key"]
