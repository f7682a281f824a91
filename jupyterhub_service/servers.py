"""Named servers through the hub's REST API: create the user, start the
server and wait until it answers; stop it and wait until it is gone.

A launch starts a server, and a teardown stops one and deletes the hub
user, under a lock per hub user: a relaunch by the same CKAN user during a
stop starts its server only once the old one is gone and the decision about
the user is made, so neither the user nor a server of the same name is
removed under the new session.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from contextlib import asynccontextmanager

from jupyterhub.utils import exponential_backoff

from .errors import BridgeError, hub_unavailable
from .hub_api import HubAPI, HubError, HubUnavailable

log = logging.getLogger("bridge.servers")

START_TIMEOUT = 120
STOP_TIMEOUT = 30


class StopFailed(Exception):
    """The hub could not be asked to stop a server, or it did not stop."""


class Servers:
    def __init__(self, hub: HubAPI):
        self.hub = hub
        self._user_locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._user_lock_users: dict[str, int] = defaultdict(int)

    @asynccontextmanager
    async def hub_user(self, name: str):
        """Exclusive use of one hub user: creating or deleting it, starting or
        stopping its servers."""
        self._user_lock_users[name] += 1
        try:
            async with self._user_locks[name]:
                yield
        finally:
            self._user_lock_users[name] -= 1
            if not self._user_lock_users[name]:
                self._user_lock_users.pop(name, None)
                self._user_locks.pop(name, None)

    async def spawn(self, hub_user: str, server_name: str, options: dict) -> None:
        """Create the hub user if needed, start the named server and wait
        until it answers."""
        try:
            async with self.hub_user(hub_user):
                await self.hub.ensure_user(hub_user)
                code = await self.hub.start_server(hub_user, server_name, options)
                if code == 400:
                    # a stale server of the same name (a session that ended
                    # while the bridge was down): stop it, then start afresh
                    log.warning("stale server %s/%s; restarting it", hub_user, server_name)
                    await self.stop(hub_user, server_name)
                    if await self.hub.start_server(hub_user, server_name, options) == 400:
                        # never hand out a server this launch did not start
                        raise HubError(400, "the server would not restart")
        except HubError as e:
            raise hub_unavailable(f"The hub refused to start the server: {e.message}") from None
        except (HubUnavailable, StopFailed):
            raise hub_unavailable() from None
        await self.wait_ready(hub_user, server_name)

    async def wait_ready(self, hub_user: str, server_name: str,
                         timeout: float = START_TIMEOUT) -> None:
        async def ready():
            try:
                server = await self.hub.server(hub_user, server_name)
            except HubUnavailable:
                raise hub_unavailable() from None
            if server and server.get("ready"):
                return True
            if server is None or not server.get("pending"):
                raise hub_unavailable("The notebook server failed to start.")
            return False

        try:
            await exponential_backoff(ready, "start timeout", start_wait=0.05,
                                      scale_factor=1.5, max_wait=0.5, timeout=timeout,
                                      timeout_tolerance=0)
        except asyncio.TimeoutError:
            raise BridgeError(504, "start_timeout",
                              "The notebook server took too long to start.") from None

    async def wait_stopped(self, hub_user: str, server_name: str,
                           timeout: float = STOP_TIMEOUT) -> None:
        async def stopped():
            server = await self.hub.server(hub_user, server_name)
            return server is None or not (server.get("ready") or server.get("pending"))

        try:
            await exponential_backoff(stopped, "stop timeout", start_wait=0.1,
                                      scale_factor=1.5, max_wait=1, timeout=timeout,
                                      timeout_tolerance=0)
        except asyncio.TimeoutError:
            raise StopFailed(f"{hub_user}/{server_name} did not stop in {timeout} s") from None

    async def stop(self, hub_user: str, server_name: str) -> None:
        """Stop and remove a named server; StopFailed unless it is really gone."""
        try:
            await self.hub.stop_server(hub_user, server_name, remove=True)
            await self.wait_stopped(hub_user, server_name)
        except (HubUnavailable, HubError) as e:
            raise StopFailed(f"stopping {hub_user}/{server_name}: {e}") from None

    async def release(self, hub_user: str, server_name: str, *, server_taken,
                      user_needed) -> None:
        """Stop a session's server and delete its hub user, under the user's
        lock from the first question to the deletion, so that no launch of
        the same hub user starts a server in between (a CKAN user's hub name
        and a dataset's server name are always the same).

        ``await server_taken()``: another live session owns a server of this
        name now; it is left to that launch, which replaces a stale one.
        ``await user_needed()``: a live session (a launch admitted during the
        stop included) still needs the hub user. StopFailed when the hub did
        not do its part."""
        async with self.hub_user(hub_user):
            if not await server_taken():
                await self.stop(hub_user, server_name)
            if await user_needed():
                return
            try:
                await self.hub.delete_user(hub_user)
            except (HubUnavailable, HubError) as e:
                raise StopFailed(f"deleting {hub_user}: {e}") from None
