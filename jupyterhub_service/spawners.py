"""The local session spawner (development only).

Every session runs as one dedicated unprivileged system user, in a home of
its own that the bridge prepared under the storage root. CPU and memory
limits are not enforced by this spawner; use the docker spawner for that.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

from jupyterhub.spawner import LocalProcessSpawner, set_user_setuid
from traitlets import Unicode


class SessionLocalSpawner(LocalProcessSpawner):
    session_user = Unicode(
        "jupyter-session",
        config=True,
        help="The unprivileged system user every local session runs as.",
    )
    sessions_root = Unicode(
        "",
        config=True,
        help="Directory holding the per-session scratch; homes must lie below it.",
    )

    @property
    def home_dir(self) -> str:
        home = str((self.user_options or {}).get("home_dir", ""))
        root = Path(self.sessions_root).resolve()
        path = Path(home).resolve() if home else None
        if path is None or root not in path.parents:
            raise ValueError("this server has no session home; sessions start through the bridge")
        return str(path)

    def make_preexec_fn(self, name):
        return set_user_setuid(self.session_user, chdir=False)

    def user_env(self, env):
        home = self.home_dir
        site = os.path.join(home, ".local", "pip")
        env.update(
            USER=self.session_user,
            HOME=home,
            SHELL="/bin/bash",
            # `pip install` goes into the session's home: the shared venv is
            # read-only to sessions, and a venv has no user site.
            PIP_TARGET=site,
            PYTHONPATH=site,
            PATH=os.pathsep.join([os.path.join(site, "bin"), os.path.dirname(sys.executable),
                                  env.get("PATH", "/usr/bin:/bin")]),
            JUPYTER_RUNTIME_DIR=os.path.join(home, ".local", "share", "jupyter", "runtime"),
            IPYTHONDIR=os.path.join(home, ".ipython"),
        )
        return env

    def get_args(self):
        return super().get_args() + [
            f"--ServerApp.root_dir={self.home_dir}",
            f"--ServerApp.preferred_dir={self.home_dir}",
        ]

    async def start(self):
        self.popen_kwargs = {**self.popen_kwargs, "cwd": self.home_dir}
        url = await super().start()
        await self._wait_listening()
        return url

    async def _wait_listening(self) -> None:
        """Return once the server accepts connections (or has died).

        The hub polls a starting server with a growing, jittered backoff
        (0.2 s doubling to 5 s), so it notices a ready server up to seconds
        late; polling the port every 50 ms here makes its first check hit.
        """
        deadline = time.monotonic() + self.http_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return  # the hub reports the failure
            try:
                _, writer = await asyncio.open_connection(self.ip or "127.0.0.1", self.port)
                writer.close()
                return
            except OSError:
                await asyncio.sleep(0.05)
