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
from jupyterhub.utils import random_port
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

    # ports this hub's live local servers were given: a fresh port is never
    # one of them (random_port() only knows what is bound at that instant)
    _ports_in_use: set[int] = set()

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._configured_port = self.port

    def _fresh_port(self) -> int:
        # a restarted server of the same name gets a new port too: its old one
        # may belong to another server by now
        while True:
            port = random_port()
            if port not in SessionLocalSpawner._ports_in_use:
                return port

    async def start(self):
        self.popen_kwargs = {**self.popen_kwargs, "cwd": self.home_dir}
        self.port = self._configured_port or self._fresh_port()
        SessionLocalSpawner._ports_in_use.add(self.port)
        try:
            url = await super().start()

            async def gone():
                return self.proc.poll() is not None

            await wait_answering(self.ip or "127.0.0.1", self.port, self.server.base_url,
                                 self.http_timeout, gone)
        except BaseException:
            SessionLocalSpawner._ports_in_use.discard(self.port)
            raise
        return url

    async def stop(self, now=False):
        try:
            await super().stop(now=now)
        finally:
            SessionLocalSpawner._ports_in_use.discard(self.port)


class ServerGone(RuntimeError):
    """The session's server ended before it answered."""


async def wait_answering(host: str, port: int, base_url: str, timeout: float, gone,
                         gone_every: float = 0.0) -> None:
    """Return once this session's own server answers at
    ``http://host:port{base_url}api``, or after ``timeout`` seconds (the hub
    then waits on its own); raise ServerGone once ``await gone()`` says its
    process or container has ended.

    Not merely a listening port: another session's server that holds the
    port (a port handed out twice) answers 404 under this server's base URL,
    and JupyterHub's own check counts any answer below 500, 404 included, as
    up. A launch must never be handed a server it did not start (issue 10
    item 18).

    The hub polls a starting server with a growing, jittered backoff (0.2 s
    doubling to 5 s), so it notices a ready server up to seconds late; the
    spawners call this before handing the server over, so that the hub's
    first check hits. ``gone`` is asked at most every ``gone_every`` seconds
    (a container's state costs an engine call).
    """
    from tornado.httpclient import AsyncHTTPClient, HTTPClientError

    url = f"http://{host}:{port}{base_url.rstrip('/')}/api"
    client = AsyncHTTPClient()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    next_check = loop.time() + gone_every
    while loop.time() < deadline:
        if loop.time() >= next_check:
            next_check = loop.time() + gone_every
            if await gone():
                raise ServerGone(f"the session server on {host}:{port} ended before it answered")
        try:
            await client.fetch(url, request_timeout=2, connect_timeout=1,
                               follow_redirects=False)
            return
        except HTTPClientError as e:
            if e.code < 400 or e.code in (401, 403):
                return  # ours, and it wants a login
            # 404: someone else's server on that port; 5xx/599: not yet up
        except (OSError, asyncio.TimeoutError):
            pass
        await asyncio.sleep(0.05)
