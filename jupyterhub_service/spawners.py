"""The local session spawner (development only).

Every session runs as a numeric uid of its own (``session_home.SESSION_UIDS``),
in the home the bridge prepared under the storage root and gave that uid: the
home's owner says which uid the server runs as. So sessions can neither open
each other's homes nor each other's processes (``/proc/<pid>/cwd``). CPU and
memory limits are not enforced by this spawner; use the docker spawner for that.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from jupyterhub.spawner import LocalProcessSpawner
from traitlets import Unicode

from .session_home import home_uid


class SessionLocalSpawner(LocalProcessSpawner):
    session_user = Unicode(
        "jupyter-session",
        config=True,
        help="The name sessions see in $USER; each runs as a uid of its own.",
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
        uid = home_uid(Path(self.home_dir))
        if uid is None:
            raise ValueError("this server's home has no session uid; sessions start through the bridge")

        def become_session_uid():
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)

        return become_session_uid

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

        async def gone():
            return self.proc.poll() is not None

        await wait_listening(self.ip or "127.0.0.1", self.port, self.http_timeout, gone)
        return url


async def wait_listening(host: str, port: int, timeout: float, gone,
                         gone_every: float = 0.0) -> None:
    """Return once a new server accepts connections on ``host:port``, or once
    ``await gone()`` says its process or container has ended (the hub then
    reports the failure), or after ``timeout`` seconds.

    The hub polls a starting server with a growing, jittered backoff (0.2 s
    doubling to 5 s), so it notices a ready server up to seconds late; the
    spawners call this before handing the server over, so that the hub's
    first check hits. ``gone`` is asked at most every ``gone_every`` seconds
    (a container's state costs an engine call).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    next_check = loop.time() + gone_every
    while loop.time() < deadline:
        if loop.time() >= next_check:
            next_check = loop.time() + gone_every
            if await gone():
                return
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 1)
            writer.close()
            return
        except (OSError, asyncio.TimeoutError):
            await asyncio.sleep(0.05)
