"""Extend: a session's end moved later by ``timeout``, up to
``max_extended_age`` after its start.

Who may, and when:

- logged-in users; guests only when ``guest_extensions`` is on
  (403 ``guests_cannot_extend``);
- not past the limit: ``max_expires_at`` is ``started_at +
  max_extended_age`` (``max_extended_age`` 0 turns Extend off), never
  earlier than the end the session already has (409 ``extend_limit``);
- not while visitors are being refused for capacity right now (429
  ``capacity``): a launch was refused with ``capacity`` (every session of
  the portal in use) within the last ``CAPACITY_WINDOW`` seconds, or, for a
  guest's session, with ``guest_capacity``. A user's extension keeps a place
  under ``max_sessions`` only, so guest refusals do not stop it. Refusals are
  remembered by this bridge process; a restart or a change of the runtime
  settings (new caps) forgets them.
- only a ready session that has not reached its end (409 ``not_running``).

The hub login of an extended session lasts with it: the ticket
authenticator's ``refresh_user`` keeps a login while its user has a live
session, and the cookie's own lifetime is a ceiling above any session age
the settings allow (jupyterhub_config.py).
"""

from __future__ import annotations

import datetime as dt
import time

from .errors import BridgeError
from .store import AsyncStore, SessionRecord, aware, iso, utcnow

#: "right now", for capacity refusals: seconds since the last one
CAPACITY_WINDOW = 300

#: the admission codes that mean visitors are being turned away for capacity
CAPACITY_CODES = ("capacity", "guest_capacity")


def max_expires_at(rec: SessionRecord, rt: dict) -> dt.datetime:
    """The latest end Extend can reach; the session's end when Extend is off."""
    expires = aware(rec.expires_at)
    limit = int(rt.get("max_extended_age") or 0)
    if not limit:
        return expires
    return max(expires, aware(rec.started_at) + dt.timedelta(seconds=limit))


class Extensions:
    def __init__(self, db: AsyncStore, runtime):
        self.db = db
        self.runtime = runtime
        # admission code -> time.monotonic() of its latest refusal
        self.refused_at: dict[str, float] = {}
        # new caps make earlier refusals stale: a settings change forgets them
        runtime.listeners.append(self.refused_at.clear)

    def note_refusal(self, code: str) -> None:
        """Admission refused a launch with ``code``."""
        if code in CAPACITY_CODES:
            self.refused_at[code] = time.monotonic()

    def capacity_pressure(self, user_kind: str) -> int:
        """Seconds until extensions are allowed again for this kind of
        session (0: visitors are not being refused now)."""
        codes = ("capacity", "guest_capacity") if user_kind == "guest" else ("capacity",)
        now = time.monotonic()
        waits = [CAPACITY_WINDOW - (now - self.refused_at[c]) for c in codes if c in self.refused_at]
        return max([0] + [int(w) + 1 for w in waits if w > 0])

    def refusal(self, rec: SessionRecord, rt: dict | None = None,
                now: dt.datetime | None = None) -> BridgeError | None:
        """Why this session cannot be extended now, or None."""
        rt = rt or self.runtime.current()
        now = now or utcnow()
        if rec.status != "ready" or aware(rec.expires_at) <= now:
            return BridgeError(409, "not_running", "The session is not running.")
        if rec.user_kind == "guest" and not rt.get("guest_extensions"):
            return BridgeError(403, "guests_cannot_extend",
                               "Guest sessions cannot be extended. Log in to the portal to "
                               "get sessions you can extend.")
        if not rt.get("max_extended_age"):
            return BridgeError(409, "extend_limit", "Sessions cannot be extended on this portal.")
        if aware(rec.expires_at) >= max_expires_at(rec, rt):
            hours = rt["max_extended_age"] / 3600
            return BridgeError(409, "extend_limit",
                               f"The session has reached the longest time a session may last "
                               f"({hours:g} h from its start).",
                               max_expires_at=iso(max_expires_at(rec, rt)))
        wait = self.capacity_pressure(rec.user_kind)
        if wait:
            return BridgeError(429, "capacity",
                               "Other visitors are being turned away because the notebook "
                               "service is full, so sessions cannot be extended right now.",
                               retry_after=wait)
        return None

    def fields(self, rec: SessionRecord) -> dict:
        """What the session JSON says about extending it."""
        rt = self.runtime.current()
        refusal = self.refusal(rec, rt)
        return {
            "max_expires_at": iso(max_expires_at(rec, rt)),
            "can_extend": refusal is None,
            "extend_refusal": refusal.code if refusal else None,
        }

    async def extend(self, session_id: str) -> SessionRecord:
        """Move the end by the session's ``timeout``, capped; raises
        BridgeError with the refusal."""
        rec = await self.db.get(session_id)
        if rec is None:
            raise BridgeError(404, "not_found", "No such session.")
        rt = self.runtime.current()
        now = utcnow()
        refusal = self.refusal(rec, rt, now)
        if refusal is not None:
            raise refusal
        step = int((rec.limits or {}).get("timeout") or rt["timeout"])
        new_end = min(aware(rec.expires_at) + dt.timedelta(seconds=step), max_expires_at(rec, rt))
        updated = await self.db.set_expiry_if_live(session_id, new_end, now)
        if updated is None:  # ended between the two reads
            raise BridgeError(409, "not_running", "The session is not running.")
        return updated
