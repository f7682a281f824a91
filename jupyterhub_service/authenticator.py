"""The ticket authenticator: a browser gets into a server only with a
one-time launch ticket issued by the bridge for that exact user and server.

There is no login form and no login by user name. ``GET /hub/login?ticket=…``
checks the ticket and redirects to the ``next`` path it signed, so the ticket
never stays in the address bar.

- ``authenticate()`` itself verifies what it is given (signature, age, unused
  nonce), because JupyterHub hands it request data on other paths too (the
  cookieless token API). It accepts only a ticket string or a pending switch
  string, never a dict of claims.
- A browser already logged in as another hub user who has a live session is
  asked before it is switched (login CSRF): the ticket is consumed on arrival
  into a short-lived signed pending switch (a cookie) and the switch happens
  only on a POST carrying ``_xsrf``.
- A login lasts as long as its user's latest live session: ``refresh_user``
  ends it once the bridge's store has no live session for the user.
- The browser that logged in with a ticket gets a signed cookie naming the
  sessions it opened; the "session ended" pages name the dataset only to it.
"""

from __future__ import annotations

import datetime as dt
import json
import re

from jupyterhub.auth import Authenticator
from jupyterhub.handlers import BaseHandler
from jupyterhub.handlers.base import UserUrlHandler
from tornado import web
from traitlets import Unicode

from . import launch_ticket, signing
from .store import LIVE, Store

_SERVER_PATH = re.compile(r"^/(?:.*/)?(?:hub/)?user/([^/]+)/([^/]+)")

# A pending switch waits this long for the visitor's answer.
SWITCH_MAX_AGE = 300
SWITCH_COOKIE = "jupyternotebook-switch"
# The sessions this browser opened; ended records are kept for a day.
OWNER_COOKIE = "jupyternotebook-sessions"
OWNER_COOKIE_DAYS = 1
_OWNED_MAX = 20

USED = "This launch link has already been used."


def _owned_sessions(handler: web.RequestHandler) -> list[str]:
    raw = handler.get_signed_cookie(OWNER_COOKIE, max_age_days=OWNER_COOKIE_DAYS)
    try:
        owned = json.loads(raw) if raw else []
    except ValueError:
        return []
    return [x for x in owned if isinstance(x, str)] if isinstance(owned, list) else []


def _remember_session(handler: BaseHandler, hub_user: str, server_name: str) -> None:
    key = f"{hub_user}/{server_name}"
    owned = [x for x in _owned_sessions(handler) if x != key][-(_OWNED_MAX - 1):] + [key]
    handler.set_signed_cookie(
        OWNER_COOKIE, json.dumps(owned), expires_days=OWNER_COOKIE_DAYS,
        path=handler.hub.base_url, httponly=True,
    )


def owned_ended_session(handler: BaseHandler, hub_user: str, server_name: str):
    """The ended session record for this server, when this browser opened it
    (None otherwise: a stranger learns nothing about whose session it was)."""
    if f"{hub_user}/{server_name}" not in _owned_sessions(handler):
        return None
    rec = handler.authenticator.store.find_ended(hub_user, server_name)
    if rec is None or rec.status not in ("ended", "error", "stopping"):
        return None
    return rec


class TicketLoginHandler(BaseHandler):
    async def get(self):
        auth: TicketAuthenticator = self.authenticator
        ticket = self.get_argument("ticket", None)
        next_arg = self.get_argument("next", None)
        if not ticket:
            return await self._no_ticket(next_arg)
        try:
            payload = launch_ticket.verify(auth.key, ticket)
        except launch_ticket.TicketError as e:
            return await self._refuse(f"This launch link is not valid ({e}).")
        if next_arg is not None and next_arg != payload["n"]:
            return await self._refuse("This launch link was issued for another page.")
        current = self.get_current_user_cookie()
        if current is not None and current.name != payload["u"]:
            live = auth.live_sessions(current.name)
            if live:
                return await self._ask_before_switching(payload, live)
            # the old login has no live session left: nothing to lose
            self.clear_login_cookie()
        await self._log_in({"ticket": ticket}, payload)

    async def post(self):
        """The visitor confirmed a pending switch (``_xsrf`` was checked in
        ``prepare``)."""
        switch = self.get_cookie(SWITCH_COOKIE)
        self.clear_cookie(SWITCH_COOKIE, path=self._switch_path)
        try:
            payload = launch_ticket.verify(self.authenticator.switch_key, switch,
                                           max_age=SWITCH_MAX_AGE)
        except launch_ticket.TicketError:
            return await self._refuse("This confirmation has expired. "
                                      "Open the dataset again from the data portal.")
        if self.get_current_user_cookie() is not None:
            self.clear_login_cookie()
        await self._log_in({"switch": switch}, payload)

    async def _log_in(self, data: dict, payload: dict):
        user = await self.login_user(data)
        if user is None:
            reason = getattr(self, "ticket_refusal", None) or "This launch link is not valid."
            return await self._refuse(reason)
        _remember_session(self, payload["u"], payload["s"])
        self.redirect(payload["n"])

    @property
    def _switch_path(self) -> str:
        return self.hub.base_url + "login"

    async def _ask_before_switching(self, payload: dict, live: list):
        auth: TicketAuthenticator = self.authenticator
        # the ticket is spent now; what remains is the pending switch
        if not auth.consume_nonce(payload["nonce"], launch_ticket.MAX_AGE):
            return await self._refuse(USED)
        switch = launch_ticket.issue(auth.switch_key, payload["u"], payload["s"], payload["n"])
        self.set_cookie(SWITCH_COOKIE, switch, path=self._switch_path, httponly=True,
                        expires_days=SWITCH_MAX_AGE / 86400)
        new = auth.store.find_ended(payload["u"], payload["s"])
        html = await self.render_template(
            "switch_session.html",
            current=[{"title": r.dataset_title or r.dataset_name, "url": r.dataset_url,
                      "open_url": f"{self.base_url}user/{r.hub_user}/{r.server_name}/"}
                     for r in live],
            new_title=(new.dataset_title or new.dataset_name) if new else "",
            new_url=new.dataset_url if new else "",
            switch_url=self._switch_path,
        )
        self.finish(html)

    async def _no_ticket(self, next_arg):
        m = _SERVER_PATH.match(next_arg or "")
        if m:
            rec = self.authenticator.store.find_ended(m.group(1), m.group(2))
            if rec is not None and rec.status in ("ended", "error", "stopping"):
                owned = owned_ended_session(self, m.group(1), m.group(2))
                self.set_status(410)
                html = await self.render_template(
                    "session_ended.html",
                    dataset_url=owned.dataset_url if owned else "",
                    dataset_title=owned.dataset_title if owned else "",
                )
                return self.finish(html)
        await self._refuse("A notebook session can only be opened with a launch link.")

    async def _refuse(self, reason: str):
        self.set_status(403)
        html = await self.render_template("launch_refused.html", reason=reason)
        self.finish(html)


class SessionUrlHandler(UserUrlHandler):
    """JupyterHub's /hub/user/… handler; its "not running" page names the
    ended session's dataset only to the browser that opened it."""

    def render_template(self, name, sync=False, **ns):
        if name == "not_running.html":
            # JupyterHub passes server_name "" once the bridge has deleted the
            # named server; the request path still names it
            m = _SERVER_PATH.match(self.request.path)
            if m:
                ns["ended"] = owned_ended_session(self, m.group(1), m.group(2))
        return super().render_template(name, sync=sync, **ns)


class TicketAuthenticator(Authenticator):
    """Accepts only one-time launch tickets from the bridge."""

    ticket_secret = Unicode(
        "",
        config=True,
        help="The shared secret tickets are signed with (the bridge's API token).",
    )
    bridge_db_url = Unicode(
        "",
        config=True,
        help="SQLAlchemy URL of the bridge's database: used ticket nonces and sessions.",
    )
    auto_login = True
    login_service = "the data portal"

    @property
    def key(self) -> bytes:
        return launch_ticket.ticket_key(self.ticket_secret)

    @property
    def switch_key(self) -> bytes:
        # a pending switch is never a valid launch ticket, nor the reverse
        return signing.derive_key(self.ticket_secret, b"ckanext-jupyternotebook pending switch")

    @property
    def store(self) -> Store:
        if not hasattr(self, "_store"):
            self._store = Store(self.bridge_db_url)
        return self._store

    def get_handlers(self, app):
        # listed before JupyterHub's own handlers, so these win
        return [
            (r"/login", TicketLoginHandler),
            (r"/user/(?P<user_name>[^/]+)(?P<user_path>/.*)?", SessionUrlHandler),
        ]

    def consume_nonce(self, nonce: str, max_age: int) -> bool:
        expires = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=max_age * 2)
        return self.store.consume_nonce(nonce, expires)

    def live_sessions(self, hub_user: str) -> list:
        return self.store.sessions(hub_user=hub_user, statuses=LIVE)

    async def authenticate(self, handler, data):
        """The hub user of a genuine, fresh, unused ticket (``{"ticket": str}``)
        or pending switch (``{"switch": str}``); None for anything else."""
        if not isinstance(data, dict):
            return None
        if isinstance(data.get("ticket"), str):
            key, token, max_age = self.key, data["ticket"], launch_ticket.MAX_AGE
        elif isinstance(data.get("switch"), str):
            key, token, max_age = self.switch_key, data["switch"], SWITCH_MAX_AGE
        else:
            return None
        try:
            payload = launch_ticket.verify(key, token, max_age=max_age)
        except launch_ticket.TicketError as e:
            self.log.warning("Refused a launch ticket: %s", e)
            return None
        if not self.consume_nonce(payload["nonce"], max_age):
            self.log.warning("Refused a used launch ticket for %s", payload["u"])
            if handler is not None:
                handler.ticket_refusal = USED
            return None
        return {"name": payload["u"]}

    async def refresh_user(self, user, handler=None):
        # A login covers the latest live session of its user and ends with
        # it: False makes JupyterHub treat the cookie or OAuth token as
        # logged out. Warm-pool servers have no session yet but must reach
        # the hub (activity, OAuth checks).
        if self.live_sessions(user.name):
            return True
        return any(p.hub_user == user.name for p in self.store.pool())

    def check_allowed(self, username, authentication=None):
        # who may launch what is decided by CKAN and the bridge; a verified
        # ticket is the permission
        return True
