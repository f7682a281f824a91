"""Who may start a session now: the caps, the per-address limits and the
guest rate limit, decided and reserved in one atomic step.

``Admission.reserve`` runs under one asyncio lock from the first read to the
new record being written, and never calls itself: a second launch of the same
dataset by the same visitor finds the first one's record and joins it. Every
pending launch holds its slot, so 2×N simultaneous guest launches against N
free slots give exactly N sessions and N refusals.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import secrets
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field

from .errors import BridgeError
from .store import LIVE, AsyncStore, SessionRecord, aware, iso, new_session_id, utcnow

# addresses the rate limiter remembers at most: a flood from many addresses
# costs bounded memory (the oldest are forgotten first)
RATE_MEMORY = 10_000


def server_slug(dataset_id: str) -> str:
    """A valid, short JupyterHub server name for a dataset."""
    return "d-" + hashlib.sha256(dataset_id.encode()).hexdigest()[:10]


def hub_user_for(kind: str, user_id: str) -> str:
    if kind == "guest":
        return "guest-" + secrets.token_hex(5)
    safe = "".join(c for c in user_id.lower() if c.isalnum() or c == "-")[:60]
    return "ckan-" + (safe or hashlib.sha256(user_id.encode()).hexdigest()[:16])


class RateLimiter:
    """Launches per client address in a sliding minute, for at most
    ``RATE_MEMORY`` addresses."""

    def __init__(self, memory: int = RATE_MEMORY):
        self.memory = memory
        self.hits: OrderedDict[str, deque] = OrderedDict()

    def check(self, key: str, per_minute: int) -> float:
        """0 when allowed (and counted), else seconds until the next slot."""
        if per_minute <= 0:
            return 0
        now = time.monotonic()
        q = self.hits.pop(key, None) or deque()
        while q and now - q[0] > 60:
            q.popleft()
        self.hits[key] = q  # most recently used last
        while len(self.hits) > self.memory:
            self.hits.popitem(last=False)
        if len(q) >= per_minute:
            return max(1.0, 60 - (now - q[0]))
        q.append(now)
        return 0


@dataclass
class Reservation:
    record: SessionRecord
    joined: bool  # an existing (or in-flight) session of this visitor and dataset
    replaced: list[str] = field(default_factory=list)  # a guest's previous sessions


def full(code: str, message: str, active: int, limit: int, soonest) -> BridgeError:
    retry = max(1, int((soonest - utcnow()).total_seconds())) if soonest else 60
    return BridgeError(429, code, message, retry_after=retry, max=limit, active=active,
                       soonest_expires_at=iso(soonest))


class Admission:
    def __init__(self, db: AsyncStore, pool_take=None):
        self.db = db
        self.lock = asyncio.Lock()
        self.rate = RateLimiter()
        # session id -> future done when its launch has finished (either
        # way); set here, under the lock, so a visitor's second click always
        # finds the first launch to wait for
        self.launching: dict[str, asyncio.Future] = {}
        # async () -> PoolRecord | None, a ready pool server (guests only)
        self.pool_take = pool_take

    async def reserve(self, req: dict, rt: dict) -> Reservation:
        user, ds = req["user"], req["dataset"]
        kind, user_id = user["kind"], str(user["id"])
        client_ip = str(req.get("client_ip") or "")
        async with self.lock:
            mine = [s for s in await self.db.sessions(user_id=user_id, statuses=LIVE)
                    if s.user_kind == kind]
            same = next((s for s in mine if s.dataset_id == ds["id"]), None)
            if same is not None:
                return Reservation(same, joined=True)
            replaced = [s.id for s in mine] if kind == "guest" else []
            await self._check_caps(kind, mine, replaced, client_ip, rt)
            for sid in replaced:
                await self.db.update(sid, status="stopping",
                                     message="replaced by a new guest session")
            slot = await self.pool_take() if (kind == "guest" and self.pool_take) else None
            existing_hub_user = mine[0].hub_user if (mine and kind == "user") else None
            now = utcnow()
            rec = SessionRecord(
                id=slot.slot_dir if slot else new_session_id(),
                user_id=user_id,
                user_kind=kind,
                user_name=str(user.get("name") or ""),
                client_ip=client_ip,
                hub_user=slot.hub_user if slot else (existing_hub_user or hub_user_for(kind, user_id)),
                server_name=slot.server_name if slot else server_slug(ds["id"]),
                from_pool=slot is not None,
                dataset_id=ds["id"],
                dataset_name=str(ds.get("name") or ""),
                dataset_title=str(ds.get("title") or ""),
                dataset_url=str(ds.get("url") or ""),
                status="pending",
                limits=session_limits(rt),
                started_at=now,
                expires_at=now + dt.timedelta(seconds=rt["timeout"]),
            )
            await self.db.add(rec)
            self.launching[rec.id] = asyncio.get_running_loop().create_future()
            return Reservation(rec, joined=False, replaced=replaced)

    async def _check_caps(self, kind, mine, replaced, client_ip, rt) -> None:
        """Raise the 429 a new session of this visitor meets, if any. Runs
        under the lock; going back to a running session never gets here."""
        if kind == "guest":
            wait = self.rate.check(client_ip or "?", rt["guest_rate_limit"])
            if wait:
                raise BridgeError(
                    429, "rate_limited",
                    "Too many launches from your address. Please wait a moment.",
                    retry_after=int(wait) + 1,
                )
        counts = await self.db.live_counts()
        # a guest has one session: launching another dataset replaces it
        # (its slot is free at once; it stops in the background)
        counts["guest"] -= len(replaced)
        # sessions still stopping hold a place under the host's cap only
        total = counts["guest"] + counts["user"] + counts["stopping"]
        if total >= rt["max_sessions"]:
            raise full("capacity", "All notebook sessions on this portal are in use.",
                       total, rt["max_sessions"], await self.db.soonest_expiry())
        if kind == "guest":
            if counts["guest"] >= rt["max_guests"]:
                raise full("guest_capacity",
                           f"All {rt['max_guests']} guest sessions are in use.",
                           counts["guest"], rt["max_guests"],
                           await self.db.soonest_expiry("guest"))
            per_address = rt.get("max_guests_per_address") or 0
            if per_address and client_ip:
                at_address = await self.db.live_guests_at(client_ip) - len(replaced)
                if at_address >= per_address:
                    raise full("address_limit",
                               f"{at_address} guest sessions are already open from your "
                               f"network address (the limit is {per_address}).",
                               at_address, per_address, await self.db.soonest_expiry("guest"))
        elif len(mine) >= rt["max_sessions_per_user"]:
            raise full(
                "user_limit",
                f"You already have {len(mine)} notebook sessions open "
                f"(the limit is {rt['max_sessions_per_user']}). Stop one to open another.",
                len(mine), rt["max_sessions_per_user"],
                min(aware(s.expires_at) for s in mine),
            )


def session_limits(rt: dict) -> dict:
    """The limits a session keeps for its life, from the settings in force."""
    limits = {k: rt[k] for k in ("cpu_percent", "memory_limit", "idle_timeout", "timeout")}
    for key in ("disk_limit", "session_egress"):
        if key in rt:
            limits[key] = rt[key]
    return limits
