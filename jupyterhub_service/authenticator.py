"""The ticket authenticator: a browser gets into a server only with a
one-time launch ticket issued by the bridge for that exact user and server.

There is no login form and no login by user name. ``/hub/login`` accepts a
ticket, replaces whatever hub cookie the browser had, and redirects to the
``next`` path the ticket signed, so the ticket never stays in the address bar.
"""

from __future__ import annotations

import datetime as dt
import re

from jupyterhub.auth import Authenticator
from jupyterhub.handlers import BaseHandler
from tornado import web
from traitlets import Unicode

from . import launch_ticket
from .store import Store

_SERVER_PATH = re.compile(r"^/(?:.*/)?(?:hub/)?user/([^/]+)/([^/]+)")


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
        expires = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=launch_ticket.MAX_AGE * 2)
        if not auth.store.consume_nonce(payload["nonce"], expires):
            return await self._refuse("This launch link has already been used.")
        # A ticket replaces any other identity the browser had (and that
        # identity's session tokens); never add to it. For the same user the
        # login is kept: JupyterHub would not set the cookie again.
        current = self.get_current_user_cookie()
        if current is not None and current.name != payload["u"]:
            self.clear_login_cookie()
        user = await self.login_user({"ticket": payload})
        if user is None:
            return await self._refuse("This launch link is not valid.")
        self.redirect(payload["n"])

    async def _no_ticket(self, next_arg):
        m = _SERVER_PATH.match(next_arg or "")
        if m:
            rec = self.authenticator.store.find_ended(m.group(1), m.group(2))
            if rec is not None and rec.status in ("ended", "error", "stopping"):
                self.set_status(410)
                html = await self.render_template(
                    "session_ended.html",
                    dataset_url=rec.dataset_url,
                    dataset_title=rec.dataset_title,
                )
                return self.finish(html)
        await self._refuse("A notebook session can only be opened with a launch link.")

    async def _refuse(self, reason: str):
        self.set_status(403)
        html = await self.render_template("launch_refused.html", reason=reason)
        self.finish(html)

    async def post(self):
        raise web.HTTPError(405)


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
        help="SQLAlchemy URL of the bridge's database: used ticket nonces and ended sessions.",
    )

    auto_login = True
    login_service = "the data portal"

    @property
    def key(self) -> bytes:
        return launch_ticket.ticket_key(self.ticket_secret)

    @property
    def store(self) -> Store:
        if not hasattr(self, "_store"):
            self._store = Store(self.bridge_db_url)
        return self._store

    def get_handlers(self, app):
        return [(r"/login", TicketLoginHandler)]

    async def authenticate(self, handler, data):
        payload = (data or {}).get("ticket")
        if not isinstance(payload, dict) or not payload.get("u"):
            return None
        return {"name": payload["u"]}

    def check_allowed(self, username, authentication=None):
        # who may launch what is decided by CKAN and the bridge; a verified
        # ticket is the permission
        return True
