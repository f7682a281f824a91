"""Named servers through the hub's REST API: create the user, start the
server and wait until it answers; stop it and wait until it is gone.

Hub users are created and deleted under a lock per hub user, so that a
teardown deciding to delete a user and a launch re-creating the same user
(a CKAN user's hub name is always the same) never interleave.
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
        """Exclusive use of one hub user's existence (create or delete)."""
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
                # a stale server of the same name: stop it, then start afresh
                log.warning("stale server %s/%s; restarting it", hub_user, server_name)
                await self.hub.stop_server(hub_user, server_name, remove=True)
                await self.wait_stopped(hub_user, server_name)
                async with self.hub_user(hub_user):
                    await self.hub.ensure_user(hub_user)
                    await self.hub.start_server(hub_user, server_name, options)
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

    async def delete_user_if_unused(self, hub_user: str, still_used) -> bool:
        """Delete a hub user unless ``await still_used()`` says a session
        (a launch just admitted included) needs it. Asked and done under the
        user's lock, so a launch cannot re-create the user in between."""
        async with self.hub_user(hub_user):
            if await still_used():
                return False
            try:
                await self.hub.delete_user(hub_user)
            except (HubUnavailable, HubError) as e:
                raise StopFailed(f"deleting {hub_user}: {e}") from None
            return True
