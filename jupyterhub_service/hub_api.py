"""A small async client for the JupyterHub REST API, as the bridge uses it."""

from __future__ import annotations

import asyncio
import json
from urllib.parse import quote, urlencode

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest


class HubUnavailable(Exception):
    """The hub did not answer, or answered with a server error."""


class HubError(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


# JupyterHub answers list calls page by page (``items`` and ``_pagination``)
# when asked with this type; without it a list is cut at api_page_max_limit
# (200 by default) with only a warning in the hub's log.
PAGINATION = "application/jupyterhub-pagination+json"
# the page size asked for; the hub clamps it to its api_page_max_limit
PAGE_LIMIT = 200


class HubAPI:
    def __init__(self, api_url: str, token: str, timeout: float = 20.0):
        self.api_url = api_url.rstrip("/")
        self.token = token
        self.timeout = timeout
        AsyncHTTPClient.configure(None, max_clients=64)
        self.http = AsyncHTTPClient()
        # the hub's major version, from the header it puts on every answer
        self.hub_major: int | None = None

    async def request(self, method: str, path: str, body=None, allow=(),
                      accept: str = "application/json") -> tuple[int, object]:
        req = HTTPRequest(
            self.api_url + path,
            method=method,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json",
                     "Accept": accept},
            body=None if body is None and method in ("GET", "DELETE") else json.dumps(body or {}),
            request_timeout=self.timeout,
            connect_timeout=5,
            allow_nonstandard_methods=True,
        )
        try:
            resp = await self.http.fetch(req, raise_error=False)
        except (OSError, asyncio.TimeoutError, HTTPClientError) as e:
            # HTTPClientError here is tornado's timeout (resolve, connect or
            # request), not an HTTP status: raise_error=False returns those
            raise HubUnavailable(str(e)) from None
        if resp.code == 599:
            raise HubUnavailable(str(resp.error))
        self._note_version(resp.headers.get("X-JupyterHub-Version"))
        if resp.code >= 500:
            raise HubUnavailable(f"hub answered {resp.code}")
        data = None
        if resp.body:
            try:
                data = json.loads(resp.body)
            except ValueError:
                data = resp.body.decode(errors="replace")
        if resp.code >= 400 and resp.code not in allow:
            msg = data.get("message", "") if isinstance(data, dict) else str(data)
            raise HubError(resp.code, msg)
        return resp.code, data

    def _note_version(self, version: str | None) -> None:
        try:
            self.hub_major = int((version or "").split(".")[0])
        except ValueError:
            pass

    @staticmethod
    def _user(name: str) -> str:
        return "/users/" + quote(name, safe="")

    async def version(self) -> str:
        _, data = await self.request("GET", "/")
        return data.get("version", "") if isinstance(data, dict) else ""

    async def get_user(self, name: str) -> dict | None:
        code, data = await self.request("GET", self._user(name), allow=(404,))
        return None if code == 404 else data

    async def ensure_user(self, name: str) -> None:
        code, _ = await self.request("POST", self._user(name), {}, allow=(409,))

    async def delete_user(self, name: str) -> None:
        await self.request("DELETE", self._user(name), allow=(404,))

    async def start_server(self, name: str, server: str, options: dict) -> int:
        if self.hub_major is None:
            await self.version()
        # JupyterHub 6 takes {"user_options": ...} (a bare body is read as
        # the options only while it has no "user_options" or "display_name"
        # key); 5.x takes the options themselves as the body
        body = {"user_options": options} if (self.hub_major or 0) >= 6 else options
        code, _ = await self.request(
            "POST", f"{self._user(name)}/servers/{quote(server)}", body, allow=(400,)
        )
        return code

    async def server(self, name: str, server: str) -> dict | None:
        user = await self.get_user(name)
        if not user:
            return None
        return (user.get("servers") or {}).get(server)

    async def stop_server(self, name: str, server: str, remove: bool = True) -> None:
        await self.request(
            "DELETE",
            f"{self._user(name)}/servers/{quote(server)}",
            {"remove": remove},
            allow=(404, 400),
        )

    async def new_token(self, name: str, scopes: list[str], expires_in: int, note: str) -> dict:
        """A new API token owned by the hub user ``name``, limited to
        ``scopes`` (the hub refuses scopes the user does not hold); the
        token's model, with ``id`` and the secret ``token``. Needs the
        ``tokens`` scope."""
        _, data = await self.request("POST", f"{self._user(name)}/tokens",
                                     {"scopes": scopes, "expires_in": expires_in, "note": note})
        if not isinstance(data, dict) or not data.get("token") or not data.get("id"):
            raise HubUnavailable("the hub answered a token request without a token")
        return data

    async def delete_token(self, name: str, token_id: str) -> None:
        """Delete one of ``name``'s tokens by its id (gone already: fine)."""
        await self.request("DELETE", f"{self._user(name)}/tokens/{quote(token_id, safe='')}",
                           allow=(404,))

    async def users(self, state: str = "active") -> list[dict]:
        """Every hub user in ``state``, each with its active servers, read
        page by page as jupyterhub-idle-culler does. ``active``: a server
        ready or pending (starting or stopping); ``ready``: a ready server;
        ``inactive``: no server at all."""
        users: list[dict] = []
        offset = 0
        while True:
            query = urlencode({"state": state, "offset": offset, "limit": PAGE_LIMIT})
            _, data = await self.request("GET", f"/users?{query}", accept=PAGINATION)
            if isinstance(data, list):  # a hub that does not paginate
                return users + data
            if not isinstance(data, dict):
                return users
            users += data.get("items") or []
            following = (data.get("_pagination") or {}).get("next")
            if not following:
                return users
            # the offset, not the hub's own next URL: that one names the
            # host the hub saw, which may not be the one we reach it at
            offset = int(following["offset"])
