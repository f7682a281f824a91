"""The bridge's small state: sessions, runtime settings, used ticket nonces
and the warm pool. SQLite by default, any SQLAlchemy URL in production.

The hub process opens the same database (read-mostly) from the ticket
authenticator, to consume nonces and to explain ended sessions.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import json
import secrets
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Integer,
    String,
    create_engine,
    delete,
    event,
    func,
    inspect,
    or_,
    select,
    text,
)
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

# sessions a visitor holds: they count against every cap
LIVE = ("pending", "ready")
# a session being torn down (or whose teardown failed and is retried): its
# server may still run, so it keeps a place under max_sessions, the host's
# cap, but no longer a guest's or a user's own slot
STOPPING = "stopping"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def new_session_id() -> str:
    """A new session's (or pool slot's) id: 24 lowercase hex digits. The id
    names the session's directory, its home image and its containers'
    labels, so it must be a key that session_disk.KEY accepts (a leading
    ``-`` or ``_``, which ``token_urlsafe`` gives one id in 32, is not) and
    fit every engine's names (Kubernetes wants lowercase)."""
    return secrets.token_hex(12)


def iso(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.isoformat().replace("+00:00", "Z")


def aware(value: dt.datetime | None) -> dt.datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=dt.timezone.utc)
    return value


class Base(DeclarativeBase):
    pass


class SessionRecord(Base):
    __tablename__ = "sessions"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(200), index=True)
    user_kind: Mapped[str] = mapped_column(String(10))
    user_name: Mapped[str] = mapped_column(String(200), default="")
    client_ip: Mapped[str] = mapped_column(String(64), default="")
    hub_user: Mapped[str] = mapped_column(String(100), index=True)
    server_name: Mapped[str] = mapped_column(String(40))
    dataset_id: Mapped[str] = mapped_column(String(100), index=True)
    dataset_name: Mapped[str] = mapped_column(String(200), default="")
    dataset_title: Mapped[str] = mapped_column(String(500), default="")
    dataset_url: Mapped[str] = mapped_column(String(1000), default="")
    open_path: Mapped[str] = mapped_column(String(500), default="start_here.ipynb")
    notebooks: Mapped[list] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(10), index=True)
    message: Mapped[str] = mapped_column(String(1000), default="")
    limits: Mapped[dict] = mapped_column(JSON, default=dict)
    cache_keys: Mapped[list] = mapped_column(JSON, default=list)
    from_pool: Mapped[bool] = mapped_column(Boolean, default=False)
    started_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # issue 13: the notebook resource the session was opened from (Save to
    # portal may upload a new version of it) and CKAN's internal base URL,
    # which the bridge posts saves to
    notebook_resource_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    portal_url: Mapped[str | None] = mapped_column(String(1000), nullable=True)

    def seconds_left(self, now: dt.datetime | None = None) -> int:
        """Whole seconds until ``expires_at`` by the bridge's clock (0 once
        passed)."""
        left = (aware(self.expires_at) - (now or utcnow())).total_seconds()
        return max(0, int(left))

    def to_dict(self, launch_url: str | None = None) -> dict:
        return {
            "id": self.id,
            "user_id": self.user_id,
            "user_kind": self.user_kind,
            "user_name": self.user_name,
            "hub_user": self.hub_user,
            "server_name": self.server_name,
            "dataset_id": self.dataset_id,
            "dataset_name": self.dataset_name,
            "dataset_title": self.dataset_title,
            "dataset_url": self.dataset_url,
            "status": self.status,
            "message": self.message,
            "limits": self.limits,
            "from_pool": bool(self.from_pool),
            "started_at": iso(self.started_at),
            "expires_at": iso(self.expires_at),
            "ended_at": iso(self.ended_at),
            "seconds_left": self.seconds_left() if self.status in LIVE else 0,
            "notebook_resource_id": self.notebook_resource_id,
            "launch_url": launch_url,
        }


class SettingRecord(Base):
    __tablename__ = "settings"

    key: Mapped[str] = mapped_column(String(60), primary_key=True)
    value: Mapped[str] = mapped_column(String(500))
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class NonceRecord(Base):
    __tablename__ = "ticket_nonces"

    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class PoolRecord(Base):
    __tablename__ = "pool"

    hub_user: Mapped[str] = mapped_column(String(100), primary_key=True)
    server_name: Mapped[str] = mapped_column(String(40))
    slot_dir: Mapped[str] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(10))  # starting | ready
    limits: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


def add_missing_columns(engine) -> list[str]:
    """Bring a database made by an older version up to the models: columns
    added since are added, nullable (``create_all`` makes missing tables
    only). Additive only; returns the ``table.column`` names added."""
    added = []
    existing_tables = set(inspect(engine).get_table_names())
    for table in Base.metadata.sorted_tables:
        if table.name not in existing_tables:
            continue
        have = {c["name"] for c in inspect(engine).get_columns(table.name)}
        for column in table.columns:
            if column.name in have:
                continue
            kind = column.type.compile(dialect=engine.dialect)
            try:
                with engine.begin() as conn:
                    conn.execute(text(f"ALTER TABLE {table.name} ADD COLUMN {column.name} {kind}"))
            except DBAPIError:
                # the hub's authenticator and the bridge open the store at
                # once: the other one may have just added it
                if column.name in {c["name"] for c in inspect(engine).get_columns(table.name)}:
                    continue
                raise
            added.append(f"{table.name}.{column.name}")
    return added


class WorkspaceRecord(Base):
    """A user's workspace (workspaces.py): who holds it now, when it was last
    used, its size when last measured and the quota of its image."""

    __tablename__ = "workspaces"

    user_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    key: Mapped[str] = mapped_column(String(64))
    holder: Mapped[str | None] = mapped_column(String(40), nullable=True, index=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    last_used: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    quota: Mapped[int] = mapped_column(BigInteger, default=0)


class ReportRunRecord(Base):
    """A report run (report_runs.py): its own session server, not a
    visitor's session, and what the run produced."""

    __tablename__ = "report_runs"

    id: Mapped[str] = mapped_column(String(100), primary_key=True)  # CKAN's run id
    session_id: Mapped[str] = mapped_column(String(40))  # scratch directory, container label
    hub_user: Mapped[str] = mapped_column(String(100))
    server_name: Mapped[str] = mapped_column(String(40))
    user_id: Mapped[str] = mapped_column(String(200), default="")
    dataset_id: Mapped[str] = mapped_column(String(100), default="")
    notebook: Mapped[str] = mapped_column(String(500), default="")
    parameters: Mapped[dict] = mapped_column(JSON, default=dict)
    time_limit: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(12), index=True)
    message: Mapped[str] = mapped_column(String(1000), default="")
    error: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    artifacts: Mapped[list] = mapped_column(JSON, default=list)
    exec_handle: Mapped[str] = mapped_column(String(200), default="")
    started_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    exec_started_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True),
                                                                nullable=True)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True),
                                                            nullable=True)
    # server, hub user and session directory removed
    cleaned_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True),
                                                           nullable=True)
    # DELETE asked: the record and the results go once cleaned
    forgotten: Mapped[bool] = mapped_column(Boolean, default=False)

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "status": self.status,
            "message": self.message,
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "error": self.error,
            "artifacts": self.artifacts or [],
            # the server, hub user, home (and container) are gone
            "cleaned": self.cleaned_at is not None,
        }


class Store:
    def __init__(self, url: str):
        kwargs = {}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        self.engine = create_engine(url, **kwargs)
        if url.startswith("sqlite"):

            @event.listens_for(self.engine, "connect")
            def _wal(dbapi_conn, _record):
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA busy_timeout=30000")
                cur.close()

        Base.metadata.create_all(self.engine)
        add_missing_columns(self.engine)
        self._sessionmaker = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def db(self):
        with self._sessionmaker() as s, s.begin():
            yield s

    # -- sessions -----------------------------------------------------------

    def get(self, session_id: str) -> SessionRecord | None:
        with self.db() as s:
            return s.get(SessionRecord, session_id)

    def add(self, record: SessionRecord) -> None:
        with self.db() as s:
            s.add(record)

    def update(self, session_id: str, **values) -> SessionRecord | None:
        with self.db() as s:
            rec = s.get(SessionRecord, session_id)
            if rec is None:
                return None
            for k, v in values.items():
                setattr(rec, k, v)
            return rec

    def sessions(self, *, user_id=None, statuses=None, dataset_id=None, hub_user=None):
        with self.db() as s:
            q = select(SessionRecord)
            if user_id is not None:
                q = q.where(SessionRecord.user_id == user_id)
            if statuses is not None:
                q = q.where(SessionRecord.status.in_(statuses))
            if dataset_id is not None:
                q = q.where(SessionRecord.dataset_id == dataset_id)
            if hub_user is not None:
                q = q.where(SessionRecord.hub_user == hub_user)
            return list(s.scalars(q.order_by(SessionRecord.started_at)))

    def live_counts(self) -> dict:
        """Live (pending or ready) sessions by kind, and the sessions still
        stopping, counted in SQL: ``{"guest", "user", "stopping"}``."""
        with self.db() as s:
            rows = s.execute(
                select(SessionRecord.status, SessionRecord.user_kind, func.count())
                .where(SessionRecord.status.in_(LIVE + (STOPPING,)))
                .group_by(SessionRecord.status, SessionRecord.user_kind)
            ).all()
        counts = {"guest": 0, "user": 0, "stopping": 0}
        for status, kind, n in rows:
            counts["stopping" if status == STOPPING else kind] += n
        return counts

    def owning_sessions(self) -> list[SessionRecord]:
        """Sessions that may still hold a server, a directory or a
        container: live, stopping, or failed and not yet cleaned up."""
        with self.db() as s:
            q = select(SessionRecord).where(or_(
                SessionRecord.status.in_(LIVE + (STOPPING,)),
                (SessionRecord.status == "error") & SessionRecord.ended_at.is_(None),
            ))
            return list(s.scalars(q))

    def live_guests_at(self, client_ip: str) -> int:
        """Live guest sessions launched from one client address."""
        with self.db() as s:
            return s.execute(
                select(func.count())
                .where(SessionRecord.status.in_(LIVE))
                .where(SessionRecord.user_kind == "guest")
                .where(SessionRecord.client_ip == client_ip)
            ).scalar() or 0

    def soonest_expiry(self, user_kind: str | None = None, user_id: str | None = None):
        with self.db() as s:
            q = select(func.min(SessionRecord.expires_at)).where(SessionRecord.status.in_(LIVE))
            if user_kind is not None:
                q = q.where(SessionRecord.user_kind == user_kind)
            if user_id is not None:
                q = q.where(SessionRecord.user_id == user_id)
            return aware(s.execute(q).scalar())

    def set_expiry_if_live(self, session_id: str, expires_at: dt.datetime,
                           now: dt.datetime) -> SessionRecord | None:
        """Move a ready, unexpired session's ``expires_at`` in one
        transaction; None when it is not (or no longer) such a session."""
        with self.db() as s:
            rec = s.get(SessionRecord, session_id)
            if rec is None or rec.status != "ready" or aware(rec.expires_at) <= now:
                return None
            rec.expires_at = expires_at
            return rec

    def expired(self, now: dt.datetime) -> list[SessionRecord]:
        with self.db() as s:
            q = (select(SessionRecord).where(SessionRecord.status == "ready")
                 .where(SessionRecord.expires_at <= now))
            return list(s.scalars(q))

    def find_ended(self, hub_user: str, server_name: str) -> SessionRecord | None:
        with self.db() as s:
            q = (
                select(SessionRecord)
                .where(SessionRecord.hub_user == hub_user)
                .where(SessionRecord.server_name == server_name)
                .order_by(SessionRecord.started_at.desc())
            )
            return s.scalars(q).first()

    def purge_ended(self, older_than: dt.datetime) -> int:
        with self.db() as s:
            res = s.execute(
                delete(SessionRecord)
                .where(SessionRecord.status.in_(("ended", "error")))
                .where(SessionRecord.ended_at < older_than)
            )
            s.execute(delete(NonceRecord).where(NonceRecord.expires_at < utcnow()))
            return res.rowcount or 0

    # -- settings -----------------------------------------------------------

    def saved_settings(self) -> tuple[dict, dt.datetime | None]:
        with self.db() as s:
            rows = list(s.scalars(select(SettingRecord)))
        values = {r.key: json.loads(r.value) for r in rows}
        updated = max((aware(r.updated_at) for r in rows), default=None)
        return values, updated

    def save_settings(self, values: dict) -> None:
        now = utcnow()
        with self.db() as s:
            for key, value in values.items():
                rec = s.get(SettingRecord, key)
                if rec is None:
                    s.add(SettingRecord(key=key, value=json.dumps(value), updated_at=now))
                else:
                    rec.value = json.dumps(value)
                    rec.updated_at = now

    # -- ticket nonces ------------------------------------------------------

    def consume_nonce(self, nonce: str, expires_at: dt.datetime) -> bool:
        """True the first time a nonce is seen, False on any replay."""
        try:
            with self.db() as s:
                s.add(NonceRecord(nonce=nonce, expires_at=expires_at))
            return True
        except IntegrityError:
            return False

    # -- pool ---------------------------------------------------------------

    def pool(self, status: str | None = None) -> list[PoolRecord]:
        with self.db() as s:
            q = select(PoolRecord)
            if status:
                q = q.where(PoolRecord.status == status)
            return list(s.scalars(q.order_by(PoolRecord.created_at)))

    def pool_add(self, rec: PoolRecord) -> None:
        with self.db() as s:
            s.add(rec)

    def pool_update(self, hub_user: str, **values) -> None:
        with self.db() as s:
            rec = s.get(PoolRecord, hub_user)
            if rec is not None:
                for k, v in values.items():
                    setattr(rec, k, v)

    def pool_remove(self, hub_user: str) -> PoolRecord | None:
        with self.db() as s:
            rec = s.get(PoolRecord, hub_user)
            if rec is not None:
                s.delete(rec)
            return rec

    # -- workspaces ---------------------------------------------------------

    def workspace(self, user_id: str) -> WorkspaceRecord | None:
        with self.db() as s:
            return s.get(WorkspaceRecord, user_id)

    def workspace_add(self, rec: WorkspaceRecord) -> WorkspaceRecord:
        with self.db() as s:
            s.add(rec)
        return rec

    def workspace_update(self, user_id: str, **values) -> None:
        with self.db() as s:
            rec = s.get(WorkspaceRecord, user_id)
            if rec is not None:
                for k, v in values.items():
                    setattr(rec, k, v)

    def workspace_remove(self, user_id: str) -> None:
        with self.db() as s:
            s.execute(delete(WorkspaceRecord).where(WorkspaceRecord.user_id == user_id))

    def workspaces(self, *, user_id=None, held=None, unused_since=None) -> list[WorkspaceRecord]:
        """Largest first."""
        with self.db() as s:
            q = select(WorkspaceRecord)
            if user_id is not None:
                q = q.where(WorkspaceRecord.user_id == user_id)
            if held:
                q = q.where(WorkspaceRecord.holder.is_not(None))
            if unused_since is not None:
                q = (q.where(WorkspaceRecord.holder.is_(None))
                     .where(WorkspaceRecord.last_used < unused_since))
            return list(s.scalars(q.order_by(WorkspaceRecord.size.desc(), WorkspaceRecord.user_id)))


    # -- report runs --------------------------------------------------------

    def run_add(self, rec: ReportRunRecord) -> bool:
        """False when a run of this id exists already."""
        try:
            with self.db() as s:
                s.add(rec)
            return True
        except IntegrityError:
            return False

    def run_get(self, run_id: str) -> ReportRunRecord | None:
        with self.db() as s:
            return s.get(ReportRunRecord, run_id)

    def run_update(self, run_id: str, only_if_status: str | None = None,
                   **values) -> ReportRunRecord | None:
        """``only_if_status``: change nothing unless the run is in this
        status (a cancel and the run's own end race for the last word)."""
        with self.db() as s:
            rec = s.get(ReportRunRecord, run_id)
            if rec is not None and only_if_status is not None and rec.status != only_if_status:
                return None
            if rec is not None:
                for k, v in values.items():
                    setattr(rec, k, v)
            return rec

    def run_delete(self, run_id: str) -> None:
        with self.db() as s:
            s.execute(delete(ReportRunRecord).where(ReportRunRecord.id == run_id))

    def runs(self, *, statuses=None, uncleaned: bool = False) -> list[ReportRunRecord]:
        with self.db() as s:
            q = select(ReportRunRecord)
            if statuses is not None:
                q = q.where(ReportRunRecord.status.in_(statuses))
            if uncleaned:
                q = q.where(ReportRunRecord.cleaned_at.is_(None))
            return list(s.scalars(q.order_by(ReportRunRecord.started_at)))


class AsyncStore:
    """The store for code on the event loop: every call runs on one worker
    thread of its own, so a slow or locked database (SQLite waits up to 30 s
    for a lock the hub process holds) never stalls the API or the reaper.

    One thread: calls run one at a time, in the order they were made, as they
    did on the loop. ``await db.get(id)`` is ``store.get(id)`` off the loop.
    """

    def __init__(self, store: Store):
        self.sync = store
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="bridge-store")

    def __getattr__(self, name):
        method = getattr(self.sync, name)
        if not callable(method):
            return method

        async def call(*args, **kwargs):
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(
                self._executor, functools.partial(method, *args, **kwargs))

        call.__name__ = name
        return call
