"""The ledger: the officers' system of record (SQLAlchemy; SQLite by default, PostgreSQL in production).

It holds requests, per-system outcomes, an append-only hash-chained event log
and the key store of per-request data keys. Every write is idempotent, so
at-least-once delivery never records anything twice.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from pipeline.deadlines import DUE_SOON_WINDOW, deadline_flag
from schemas import (
    FINAL_SYSTEM_STATUSES,
    ErasureCompleted,
    ErasureOutcome,
    ErasurePlanned,
    ErasureTask,
    Scope,
    SealedIdentities,
    SystemSummary,
)

metadata = sa.MetaData()
UtcDateTime = sa.DateTime(timezone=True)

requests_table = sa.Table(
    "erasure_requests", metadata,
    sa.Column("request_id", sa.String(36), primary_key=True),
    sa.Column("subject_ref", sa.String(200), nullable=False, index=True),
    sa.Column("received_at", UtcDateTime, nullable=False),
    sa.Column("due_at", UtcDateTime, nullable=False, index=True),
    sa.Column("planned_at", UtcDateTime, nullable=False),
    sa.Column("status", sa.String(32), nullable=False, index=True),
    sa.Column("completed_at", UtcDateTime),
    sa.Column("on_time", sa.Boolean),
    sa.Column("completion_published", sa.Boolean, nullable=False, default=False),
    sa.Column("sealed_identities", sa.Text, nullable=False),
    sa.Column("scope", sa.Text),
    sa.Column("channel", sa.String(32)),
    sa.Column("verification", sa.String(32)),
    sa.Column("extension_months", sa.Integer, nullable=False, default=0),
    sa.Column("reopened", sa.Integer, nullable=False, default=0),
    sa.Column("extension_reason", sa.Text),
)

systems_table = sa.Table(
    "erasure_system_outcomes", metadata,
    sa.Column("request_id", sa.String(36), primary_key=True),
    sa.Column("system", sa.String(64), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("final", sa.Boolean, nullable=False, default=False),
    sa.Column("expected_turnaround_s", sa.Float, nullable=False),
    sa.Column("expected_by", UtcDateTime, nullable=False, index=True),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.Column("evidence", sa.Text),
    sa.Column("holds", sa.Text),
    sa.Column("error", sa.Text),
)

events_table = sa.Table(
    "erasure_events", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("position", sa.BigInteger, nullable=False, unique=True),
    sa.Column("request_id", sa.String(36), nullable=False, index=True),
    sa.Column("system", sa.String(64)),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("attempt", sa.Integer),
    sa.Column("status", sa.String(32)),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("recorded_at", UtcDateTime, nullable=False),
    sa.Column("dedupe_key", sa.String(200), nullable=False, unique=True),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)

chain_head_table = sa.Table(
    "erasure_chain_head", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("last_hash", sa.String(64), nullable=False),
    sa.Column("last_position", sa.BigInteger, nullable=False),
)

data_keys_table = sa.Table(
    "erasure_data_keys", metadata,
    sa.Column("request_id", sa.String(36), primary_key=True),
    sa.Column("data_key", sa.LargeBinary(64)),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("tasks_published_at", UtcDateTime),
    sa.Column("destroyed_at", UtcDateTime),
)

holds_table = sa.Table(
    "erasure_holds", metadata,
    sa.Column("request_id", sa.String(36), primary_key=True),
    sa.Column("system", sa.String(64), primary_key=True),
    sa.Column("data_category", sa.String(64), primary_key=True),
    sa.Column("legal_basis", sa.String(200), nullable=False),
    sa.Column("citation", sa.String(200), nullable=False),
    sa.Column("retain_until", UtcDateTime, nullable=False, index=True),
    sa.Column("recorded_at", UtcDateTime, nullable=False),
    sa.Column("release_requested_at", UtcDateTime),
    sa.Column("released_at", UtcDateTime),
)

notifications_table = sa.Table(
    "erasure_notifications", metadata,
    sa.Column("notification_id", sa.String(100), primary_key=True),
    sa.Column("request_id", sa.String(36), nullable=False, index=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("due_at", UtcDateTime, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("next_attempt_at", UtcDateTime, nullable=False, index=True),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("delivered_at", UtcDateTime),
    sa.Column("last_error", sa.String(200)),
)

receipts_table = sa.Table(
    "intake_receipts", metadata,
    sa.Column("request_id", sa.String(36), primary_key=True),
    sa.Column("client", sa.String(64), nullable=False),
    sa.Column("body_sha256", sa.String(64), nullable=False),
    sa.Column("received_at", UtcDateTime, nullable=False),
    sa.Column("due_at", UtcDateTime, nullable=False),
    sa.Column("accepted_at", UtcDateTime, nullable=False),
)

GENESIS_HASH = "0" * 64
RELEASE_RETRY_AFTER = timedelta(hours=1)
NON_REDRIVEN_STATUSES = ("manual",)


def utc(moment: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes: everything in the ledger is UTC."""
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def chain_hash(prev_hash: str, row: dict[str, Any]) -> str:
    fields = {k: row[k] for k in ("position", "request_id", "system", "kind", "attempt", "status",
                                  "payload", "recorded_at", "dedupe_key")}
    fields["recorded_at"] = utc(fields["recorded_at"]).isoformat()  # type: ignore[union-attr]
    return hashlib.sha256((prev_hash + _json(fields)).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class SystemView:
    system: str
    status: str
    attempt: int
    evidence: dict[str, Any] | None
    holds: list[dict[str, Any]]
    error: dict[str, Any] | None
    updated_at: datetime


@dataclass(frozen=True)
class RequestView:
    request_id: str
    subject_ref: str
    received_at: datetime
    due_at: datetime
    status: str
    completed_at: datetime | None
    on_time: bool | None
    deadline_flag: str | None
    systems: list[SystemView]
    channel: str | None = None
    verification: str | None = None
    extension_months: int = 0
    extension_reason: str | None = None


@dataclass(frozen=True)
class KeyGrant:
    request_id: str
    data_key: bytes
    tasks_published: bool


class Ledger:
    def __init__(self, url: str) -> None:
        connect_args: dict[str, Any] = {}
        if url.startswith("sqlite"):
            connect_args = {"timeout": 30, "check_same_thread": False}
        self.engine = sa.create_engine(url, connect_args=connect_args, pool_pre_ping=True)
        if url.startswith("sqlite"):
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
            sa.event.listen(self.engine, "begin", _sqlite_begin)
        # Writers of the hash chain take the write lock when they begin (SQLite: BEGIN IMMEDIATE;
        # PostgreSQL and MariaDB lock the chain head row), so no two read the same head.
        self.writer = self.engine.execution_options(immediate=True)
        self.is_postgres = self.engine.dialect.name == "postgresql"
        metadata.create_all(self.engine)
        with self.writer.begin() as conn:
            if conn.execute(sa.select(chain_head_table.c.id)).first() is None:
                try:
                    with conn.begin_nested():
                        conn.execute(chain_head_table.insert().values(id=1, last_hash=GENESIS_HASH,
                                                                     last_position=0))
                except IntegrityError:
                    pass

    def close(self) -> None:
        self.engine.dispose()

    # -- key store -----------------------------------------------------------
    def grant_data_keys(self, proposals: dict[str, bytes], now: datetime) -> dict[str, KeyGrant]:
        """Store each request's data key unless one exists; return the key in force."""
        if not proposals:
            return {}
        with self.writer.begin() as conn:
            existing = {
                row.request_id: row
                for row in conn.execute(sa.select(data_keys_table).where(
                    data_keys_table.c.request_id.in_(list(proposals))))
            }
            fresh = [{"request_id": rid, "data_key": key, "created_at": now}
                     for rid, key in proposals.items() if rid not in existing]
            if fresh:
                conn.execute(data_keys_table.insert(), fresh)
        grants = {}
        for rid, key in proposals.items():
            row = existing.get(rid)
            if row is None:
                grants[rid] = KeyGrant(rid, key, False)
            elif row.data_key is not None:
                grants[rid] = KeyGrant(rid, row.data_key, row.tasks_published_at is not None)
        return grants

    def mark_tasks_published(self, request_ids: Iterable[str], now: datetime) -> None:
        ids = list(request_ids)
        if ids:
            with self.writer.begin() as conn:
                conn.execute(data_keys_table.update()
                             .where(data_keys_table.c.request_id.in_(ids))
                             .values(tasks_published_at=now))

    def data_key(self, request_id: str) -> bytes | None:
        with self.engine.connect() as conn:
            value = conn.execute(sa.select(data_keys_table.c.data_key).where(
                data_keys_table.c.request_id == request_id)).scalar()
        return bytes(value) if value is not None else None

    # -- recording -------------------------------------------------------------
    def _chain(self, conn: sa.Connection, dedupe_keys: Iterable[str]) -> _ChainWriter:
        """Lock the chain head; know which of these events are already recorded."""
        query = sa.select(chain_head_table).where(chain_head_table.c.id == 1)
        if self.engine.dialect.name != "sqlite":
            query = query.with_for_update()
        head = conn.execute(query).one()
        keys = list(dedupe_keys)
        known: set[str] = set()
        for chunk in _chunks(keys, 500):
            known.update(conn.execute(sa.select(events_table.c.dedupe_key).where(
                events_table.c.dedupe_key.in_(chunk))).scalars())
        return _ChainWriter(head.last_hash, head.last_position, known)

    def record(self, events: Sequence[ErasurePlanned | ErasureOutcome], now: datetime,
               ) -> list[ErasureCompleted]:
        """Apply a batch in one transaction (a few statements per batch); return its completions."""
        ids = sorted({e.request_id for e in events})
        with self.writer.begin() as conn:
            requests: dict[str, dict[str, Any]] = {}
            systems: dict[str, dict[str, dict[str, Any]]] = {}
            for chunk in _chunks(ids, 500):
                for row in conn.execute(sa.select(requests_table).where(
                        requests_table.c.request_id.in_(chunk))):
                    requests[row.request_id] = dict(row._mapping)
                for row in conn.execute(sa.select(systems_table).where(
                        systems_table.c.request_id.in_(chunk))):
                    systems.setdefault(row.request_id, {})[row.system] = dict(row._mapping)
            chain = self._chain(conn, [_dedupe_key(e) for e in events]
                                + [completion_key(rid, requests[rid]["reopened"] if rid in requests else 0)
                                   for rid in ids])
            batch = _Batch(requests, systems, chain, now)
            for event in events:
                if isinstance(event, ErasurePlanned):
                    batch.plan(event)
                else:
                    batch.outcome(event)
            completions = [c for rid in sorted(batch.touched) if (c := batch.complete_if_final(rid))]
            batch.write(conn)
        return completions

    def request_releases(self, now: datetime, max_tasks: int = 1000) -> list[ErasureTask]:
        """A release task per (request, system) whose holds have ended, naming those categories."""
        with self.writer.begin() as conn:
            due = conn.execute(
                sa.select(holds_table, requests_table.c.received_at, requests_table.c.due_at,
                          requests_table.c.subject_ref, requests_table.c.sealed_identities,
                          requests_table.c.scope, systems_table.c.attempt)
                .join(requests_table, requests_table.c.request_id == holds_table.c.request_id)
                .join(systems_table, sa.and_(systems_table.c.request_id == holds_table.c.request_id,
                                             systems_table.c.system == holds_table.c.system))
                .where(holds_table.c.released_at.is_(None), holds_table.c.retain_until <= now,
                       sa.or_(holds_table.c.release_requested_at.is_(None),
                              holds_table.c.release_requested_at < now - RELEASE_RETRY_AFTER))
                .order_by(holds_table.c.request_id, holds_table.c.system)
                .limit(max_tasks)).all()
            groups: dict[tuple[str, str], list[Any]] = {}
            for row in due:
                groups.setdefault((row.request_id, row.system), []).append(row)
            if not groups:
                return []
            chain = self._chain(conn, [])
            tasks = []
            for (request_id, system), rows in groups.items():
                first = rows[0]
                attempt = first.attempt + 1
                categories = sorted(r.data_category for r in rows)
                conn.execute(holds_table.update().where(
                    holds_table.c.request_id == request_id, holds_table.c.system == system,
                    holds_table.c.data_category.in_(categories)).values(release_requested_at=now))
                conn.execute(_SYSTEM_UPDATE.values(attempt=attempt), [
                    {"b_request_id": request_id, "b_system": system}])
                chain.append(request_id, system, "release_requested", attempt, "held",
                             {"categories": categories,
                              "retain_until": str(max(r.retain_until for r in rows))},
                             now, f"{request_id}:{system}:{attempt}:release_requested")
                tasks.append(task_for(first._mapping, system, attempt, purpose="release",
                                      release_categories=categories))
            chain.write(conn)
        return tasks

    def active_holds(self, system: str | None = None) -> list[sa.Row[Any]]:
        query = (sa.select(holds_table).where(holds_table.c.released_at.is_(None))
                 .order_by(holds_table.c.system, holds_table.c.retain_until, holds_table.c.request_id))
        if system:
            query = query.where(holds_table.c.system == system)
        with self.engine.connect() as conn:
            return list(conn.execute(query).all())

    def holds_of(self, request_id: str) -> list[sa.Row[Any]]:
        with self.engine.connect() as conn:
            return list(conn.execute(sa.select(holds_table).where(
                holds_table.c.request_id == request_id).order_by(
                holds_table.c.system, holds_table.c.data_category)).all())

    def destroy_data_keys(self, now: datetime, grace_s: float) -> int:
        """Crypto-shred: destroy the data keys of requests finished over `grace_s` ago.

        Every copy of their identities (Kafka, backups, replays) becomes unreadable. Requests
        needing attention, or with a hold not yet released, keep theirs: their data may still
        have to be erased.
        """
        cutoff = now - timedelta(seconds=grace_s)
        unreleased = sa.exists().where(holds_table.c.request_id == requests_table.c.request_id,
                                       holds_table.c.released_at.is_(None))
        last_release = (sa.select(sa.func.max(holds_table.c.released_at))
                        .where(holds_table.c.request_id == requests_table.c.request_id)
                        .scalar_subquery())
        with self.writer.begin() as conn:
            due = list(conn.execute(
                sa.select(data_keys_table.c.request_id)
                .join(requests_table, requests_table.c.request_id == data_keys_table.c.request_id)
                .where(data_keys_table.c.destroyed_at.is_(None),
                       sa.or_(
                           sa.and_(requests_table.c.status == "completed",
                                   requests_table.c.completed_at <= cutoff),
                           sa.and_(requests_table.c.status == "completed_with_holds", ~unreleased,
                                   last_release <= cutoff)))
                .limit(1000)).scalars())
            if not due:
                return 0
            conn.execute(data_keys_table.update().where(data_keys_table.c.request_id.in_(due))
                         .values(data_key=None, destroyed_at=now))
            chain = self._chain(conn, [f"{rid}:data_key_destroyed" for rid in due])
            for rid in due:
                chain.append(rid, None, "data_key_destroyed", None, None, {"grace_s": grace_s}, now,
                             f"{rid}:data_key_destroyed")
            chain.write(conn)
        return len(due)

    def mark_completion_published(self, request_ids: Iterable[str]) -> None:
        ids = list(request_ids)
        if ids:
            with self.writer.begin() as conn:
                conn.execute(requests_table.update().where(requests_table.c.request_id.in_(ids))
                             .values(completion_published=True))

    def unpublished_completions(self) -> list[ErasureCompleted]:
        """Completions recorded but not yet announced (a crash between the two)."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(requests_table).where(
                requests_table.c.status != "in_progress",
                requests_table.c.completion_published.is_(False))).all()
            result = []
            for request in rows:
                systems = conn.execute(sa.select(systems_table).where(
                    systems_table.c.request_id == request.request_id)).all()
                result.append(completion_event(request._mapping, [s._mapping for s in systems]))
        return result

    def redrive_silent(self, now: datetime, max_tasks: int = 1000) -> list[ErasureTask]:
        """Tasks for planned systems silent past their expected turnaround, next attempt each."""
        tasks: list[ErasureTask] = []
        with self.writer.begin() as conn:
            silent = conn.execute(
                sa.select(systems_table, requests_table.c.received_at, requests_table.c.due_at,
                          requests_table.c.subject_ref, requests_table.c.sealed_identities,
                          requests_table.c.scope)
                .join(requests_table, requests_table.c.request_id == systems_table.c.request_id)
                .where(systems_table.c.final.is_(False),
                       systems_table.c.status.not_in(NON_REDRIVEN_STATUSES),
                       systems_table.c.expected_by < now)
                .limit(max_tasks)).all()
            if not silent:
                return []
            chain = self._chain(conn, [f"{r.request_id}:{r.system}:{r.attempt + 1}:redriven"
                                       for r in silent])
            updates = []
            for row in silent:
                attempt = row.attempt + 1
                updates.append({"b_request_id": row.request_id, "b_system": row.system,
                                "attempt": attempt, "updated_at": now,
                                "expected_by": now + timedelta(seconds=row.expected_turnaround_s)})
                chain.append(row.request_id, row.system, "redriven", attempt, row.status,
                             {"silent_since": utc(row.updated_at).isoformat()},  # type: ignore[union-attr]
                             now, f"{row.request_id}:{row.system}:{attempt}:redriven")
                tasks.append(task_for(row._mapping, row.system, attempt))
            conn.execute(_SYSTEM_UPDATE.values(attempt=sa.bindparam("attempt"),
                                               updated_at=sa.bindparam("updated_at"),
                                               expected_by=sa.bindparam("expected_by")), updates)
            chain.write(conn)
        return tasks

    # -- queries -----------------------------------------------------------------
    def request(self, request_id: str, now: datetime) -> RequestView | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(requests_table).where(
                requests_table.c.request_id == request_id)).first()
            if row is None:
                return None
            systems = conn.execute(sa.select(systems_table).where(
                systems_table.c.request_id == request_id).order_by(systems_table.c.system)).all()
        return _request_view(row, systems, now)

    def list_requests(self, now: datetime, status: str | None = None, overdue: bool = False,
                      limit: int = 200, due_soon: bool = False, search: str | None = None,
                      ) -> list[RequestView]:
        query = sa.select(requests_table).order_by(requests_table.c.received_at.desc())
        if status:
            query = query.where(requests_table.c.status == status)
        if overdue:
            query = query.where(requests_table.c.status == "in_progress",
                                requests_table.c.due_at < now)
        if due_soon:
            query = query.where(requests_table.c.status == "in_progress", requests_table.c.due_at >= now,
                                requests_table.c.due_at <= now + DUE_SOON_WINDOW)
        if search:
            query = query.where(sa.or_(requests_table.c.request_id.startswith(search.strip().lower()),
                                       requests_table.c.subject_ref == search.strip()))
        with self.engine.connect() as conn:
            rows = conn.execute(query.limit(limit)).all()
        return [_request_view(row, [], now) for row in rows]

    def events(self, request_id: str | None = None) -> list[sa.Row[Any]]:
        query = sa.select(events_table).order_by(events_table.c.position)
        if request_id:
            query = query.where(events_table.c.request_id == request_id)
        with self.engine.connect() as conn:
            return list(conn.execute(query).all())

    def chain_head(self) -> tuple[int, str]:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(chain_head_table).where(chain_head_table.c.id == 1)).one()
        return int(row.last_position), str(row.last_hash)

    def verify_chain(self) -> int | None:
        """The position of the first event that does not follow from its predecessor, or None."""
        prev = GENESIS_HASH
        for expected, row in enumerate(self.events(), start=1):
            data = dict(row._mapping)
            if (data["position"] != expected or data["prev_hash"] != prev
                    or chain_hash(prev, data) != data["hash"]):
                return expected
            prev = data["hash"]
        return None


def task_for(request: Mapping[Any, Any], system: str, attempt: int, **extra: Any) -> ErasureTask:
    """A system's task rebuilt from the request's ledger row (re-drive, release, officer retry)."""
    return ErasureTask(
        request_id=request["request_id"], system=system, attempt=attempt,
        received_at=utc(request["received_at"]), due_at=utc(request["due_at"]),  # type: ignore[arg-type]
        subject_ref=request["subject_ref"],
        identities=SealedIdentities.model_validate_json(request["sealed_identities"]),
        scope=Scope.model_validate_json(request["scope"]) if request["scope"] else None, **extra)


def completion_event(request: Mapping[Any, Any], systems: Sequence[Mapping[Any, Any]]) -> ErasureCompleted:
    """The `ErasureCompleted` of a finished request, from its ledger rows."""
    return ErasureCompleted(
        request_id=request["request_id"], status=request["status"],
        systems=[SystemSummary(system=s["system"], status=s["status"], attempt=s["attempt"])
                 for s in sorted(systems, key=lambda s: s["system"])],
        received_at=utc(request["received_at"]), due_at=utc(request["due_at"]),  # type: ignore[arg-type]
        completed_at=utc(request["completed_at"]), on_time=bool(request["on_time"]),  # type: ignore[arg-type]
    )


def completion_key(request_id: str, reopened: int) -> str:
    """A request completes once, and once more after each officer retry reopened it."""
    return f"{request_id}:completed" if not reopened else f"{request_id}:completed:{reopened}"


def _chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for index in range(0, len(items), size):
        yield items[index:index + size]


def _dedupe_key(event: ErasurePlanned | ErasureOutcome) -> str:
    if isinstance(event, ErasurePlanned):
        return f"{event.request_id}:planned"
    suffix = ":release" if event.purpose == "release" else ""
    return f"{event.request_id}:{event.system}:{event.attempt}:{event.status}{suffix}"


_SYSTEM_UPDATE = systems_table.update().where(
    systems_table.c.request_id == sa.bindparam("b_request_id"),
    systems_table.c.system == sa.bindparam("b_system"))
_SYSTEM_FIELDS = ("status", "attempt", "final", "updated_at", "expected_by", "evidence", "holds", "error")


class _ChainWriter:
    """Appends events to the hash chain in memory; `write` inserts them in order."""

    def __init__(self, head: str, position: int, known_keys: set[str]) -> None:
        self.head = head
        self.position = position
        self.known = known_keys
        self.rows: list[dict[str, Any]] = []

    def append(self, request_id: str, system: str | None, kind: str, attempt: int | None,
               status: str | None, payload: dict[str, Any], now: datetime, dedupe_key: str) -> bool:
        if dedupe_key in self.known:
            return False
        row: dict[str, Any] = {"request_id": request_id, "system": system, "kind": kind,
                               "attempt": attempt, "status": status, "payload": _json(payload),
                               "recorded_at": now, "dedupe_key": dedupe_key, "prev_hash": self.head}
        self.position += 1
        row["position"] = self.position
        row["hash"] = self.head = chain_hash(self.head, row)
        self.known.add(dedupe_key)
        self.rows.append(row)
        return True

    def write(self, conn: sa.Connection) -> None:
        if self.rows:
            conn.execute(events_table.insert(), self.rows)
            conn.execute(chain_head_table.update().where(chain_head_table.c.id == 1)
                         .values(last_hash=self.head, last_position=self.position))


class _Batch:
    """One batch of plans and outcomes applied to in-memory rows, then written at once."""

    def __init__(self, requests: dict[str, dict[str, Any]],
                 systems: dict[str, dict[str, dict[str, Any]]], chain: _ChainWriter,
                 now: datetime) -> None:
        self.requests, self.systems, self.chain, self.now = requests, systems, chain, now
        self.new_requests: list[str] = []
        self.new_systems: list[tuple[str, str]] = []
        self.dirty_systems: set[tuple[str, str]] = set()
        self.dirty_requests: set[str] = set()
        self.touched: set[str] = set()
        self.new_holds: list[dict[str, Any]] = []
        self.notifications: list[dict[str, Any]] = []
        self.released: list[tuple[str, str]] = []

    def plan(self, plan: ErasurePlanned) -> None:
        if plan.request_id in self.requests:
            return
        self.requests[plan.request_id] = {
            "request_id": plan.request_id, "subject_ref": plan.subject_ref,
            "received_at": plan.received_at, "due_at": plan.due_at, "planned_at": plan.planned_at,
            "status": "in_progress", "completed_at": None, "on_time": None,
            "completion_published": False, "sealed_identities": plan.identities.model_dump_json(),
            "scope": plan.scope.model_dump_json() if plan.scope else None,
            "channel": plan.channel, "verification": plan.verification,
            "extension_months": 0, "extension_reason": None, "reopened": 0,
        }
        self.new_requests.append(plan.request_id)
        rows = self.systems.setdefault(plan.request_id, {})
        for target in plan.targets:
            rows[target.system] = {
                "request_id": plan.request_id, "system": target.system, "status": "planned",
                "attempt": 1, "final": False, "expected_turnaround_s": target.expected_turnaround_s,
                "expected_by": self.now + timedelta(seconds=target.expected_turnaround_s),
                "updated_at": self.now, "evidence": None, "holds": None, "error": None}
            self.new_systems.append((plan.request_id, target.system))
        self.chain.append(plan.request_id, None, "planned", None, "in_progress",
                          {"targets": [t.system for t in plan.targets],
                           "due_at": plan.due_at.isoformat(),
                           "received_at": plan.received_at.isoformat()},
                          self.now, _dedupe_key(plan))
        self.touched.add(plan.request_id)

    def release(self, outcome: ErasureOutcome) -> None:
        """The outcome of a release task: a hold ended and its data was erased (or was gone)."""
        if outcome.request_id not in self.systems or outcome.system not in self.systems[outcome.request_id]:
            return
        done = outcome.status in ("erased", "not_found")
        kind = "released" if done else "release_outcome"
        if self.chain.append(outcome.request_id, outcome.system, kind, outcome.attempt, outcome.status,
                             outcome.model_dump(mode="json", exclude={"event_type"}), self.now,
                             _dedupe_key(outcome)) and done:
            self.released.append((outcome.request_id, outcome.system))

    def outcome(self, outcome: ErasureOutcome) -> None:
        if outcome.purpose == "release":
            self.release(outcome)
            return
        row = self.systems.get(outcome.request_id, {}).get(outcome.system)
        if row is None or row["final"]:
            return  # not planned, or already final: a duplicate changes nothing
        final = outcome.status in FINAL_SYSTEM_STATUSES
        if not final and outcome.attempt < row["attempt"]:
            return  # an interim report from an attempt already superseded (re-driven)
        if not self.chain.append(outcome.request_id, outcome.system, "outcome", outcome.attempt,
                                 outcome.status, outcome.model_dump(mode="json", exclude={"event_type"}),
                                 self.now, _dedupe_key(outcome)):
            return
        next_at = utc(outcome.next_attempt_at) or self.now
        attempt = outcome.attempt + 1 if outcome.status == "retrying" else outcome.attempt
        row.update(
            status=outcome.status, attempt=max(attempt, row["attempt"]), final=final,
            updated_at=self.now,
            expected_by=max(next_at, self.now) + timedelta(seconds=row["expected_turnaround_s"]),
            evidence=outcome.evidence.model_dump_json() if outcome.evidence else row["evidence"],
            holds=_json([h.model_dump(mode="json") for h in outcome.holds]) if outcome.holds
            else row["holds"],
            error=outcome.error.model_dump_json() if outcome.error else None,
        )
        self.dirty_systems.add((outcome.request_id, outcome.system))
        if final:
            self.touched.add(outcome.request_id)
        if outcome.status == "held":
            self.new_holds.extend(
                {"request_id": outcome.request_id, "system": outcome.system,
                 "data_category": h.data_category, "legal_basis": h.legal_basis, "citation": h.citation,
                 "retain_until": h.retain_until, "recorded_at": self.now}
                for h in outcome.holds)

    def complete_if_final(self, request_id: str) -> ErasureCompleted | None:
        request = self.requests.get(request_id)
        if request is None or request["status"] != "in_progress":
            return None
        systems = sorted(self.systems.get(request_id, {}).values(), key=lambda s: s["system"])
        if not all(s["final"] for s in systems):
            return None
        statuses = {s["status"] for s in systems}
        status = ("needs_attention" if "failed" in statuses
                  else "completed_with_holds" if "held" in statuses else "completed")
        due = utc(request["due_at"])
        assert due is not None
        on_time = self.now <= due
        request.update(status=status, completed_at=self.now, on_time=on_time)
        self.dirty_requests.add(request_id)
        key = completion_key(request_id, request["reopened"])
        self.chain.append(request_id, None, "completed", None, status, {"on_time": on_time},
                          self.now, key)
        self.notifications.append({
            "notification_id": key, "request_id": request_id, "kind": "completed", "status": status,
            "due_at": due, "created_at": self.now, "next_attempt_at": self.now, "attempts": 0})
        return completion_event(request, systems)

    def write(self, conn: sa.Connection) -> None:
        if self.new_requests:
            conn.execute(requests_table.insert(), [self.requests[r] for r in self.new_requests])
        new_systems = set(self.new_systems)
        if new_systems:
            conn.execute(systems_table.insert(),
                         [self.systems[r][s] for r, s in self.new_systems])
        updates = [{"b_request_id": r, "b_system": s,
                    **{f: self.systems[r][s][f] for f in _SYSTEM_FIELDS}}
                   for r, s in sorted(self.dirty_systems) if (r, s) not in new_systems]
        if updates:
            conn.execute(_SYSTEM_UPDATE.values({f: sa.bindparam(f) for f in _SYSTEM_FIELDS}), updates)
        if self.dirty_requests:
            conn.execute(requests_table.update().where(
                requests_table.c.request_id == sa.bindparam("b_request_id")).values(
                status=sa.bindparam("status"), completed_at=sa.bindparam("completed_at"),
                on_time=sa.bindparam("on_time")),
                [{"b_request_id": r, "status": self.requests[r]["status"],
                  "completed_at": self.requests[r]["completed_at"],
                  "on_time": self.requests[r]["on_time"]} for r in sorted(self.dirty_requests)])
        if self.new_holds:
            conn.execute(holds_table.insert(), self.new_holds)
        if self.notifications:
            conn.execute(notifications_table.insert(), self.notifications)
        for request_id, system in self.released:
            # Only the holds this release was asked for: one that ends later stays in force.
            conn.execute(holds_table.update().where(
                holds_table.c.request_id == request_id, holds_table.c.system == system,
                holds_table.c.release_requested_at.is_not(None),
                holds_table.c.released_at.is_(None)).values(released_at=self.now))
        self.chain.write(conn)


def _request_view(row: sa.Row[Any], systems: Sequence[sa.Row[Any]], now: datetime) -> RequestView:
    due = utc(row.due_at)
    assert due is not None
    return RequestView(
        request_id=row.request_id, subject_ref=row.subject_ref,
        received_at=utc(row.received_at), due_at=due, status=row.status,  # type: ignore[arg-type]
        completed_at=utc(row.completed_at), on_time=row.on_time,
        deadline_flag=deadline_flag(due, now, row.status != "in_progress"),
        channel=row.channel, verification=row.verification,
        extension_months=row.extension_months or 0, extension_reason=row.extension_reason,
        systems=[SystemView(
            system=s.system, status=s.status, attempt=s.attempt,
            evidence=json.loads(s.evidence) if s.evidence else None,
            holds=json.loads(s.holds) if s.holds else [],
            error=json.loads(s.error) if s.error else None,
            updated_at=utc(s.updated_at),  # type: ignore[arg-type]
        ) for s in systems],
    )


def _sqlite_begin(conn: sa.Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("immediate") else "BEGIN")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # pysqlite would only BEGIN at the first write, after our reads: we begin ourselves.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
