"""The key store: one data key per request, sealing its identities wherever they travel.

Destroying a key is crypto-shredding: every copy of the identities (Kafka, backups,
replays) becomes unreadable at once. Keys are stored wrapped by a key-encryption key held
outside the database (`pipeline.keywrap`), so a copy of the database alone opens nothing;
on SQLite a destroyed key leaves no bytes behind (secure_delete, then the WAL truncated).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from pipeline.keywrap import KeyWrapError, KeyWrapper, is_clear_data_key
from pipeline.ledger import dedupe
from pipeline.ledger.chain import open_chain
from pipeline.ledger.tables import data_keys_table, holds_table, requests_table

DESTROYED_PER_CALL = 1000
# Ids per `IN (...)` of a bulk key lookup: far below every dialect's bound-parameter limit.
KEYS_PER_QUERY = 500
# Tasks published this long ago whose plan the ledger never recorded were lost with the broker (a broker
# restarted without its storage): the request is routed again when it comes back (issue 11).
LOST_PLAN_AFTER = timedelta(seconds=60)

log = logging.getLogger(__name__)


class NoKekError(KeyWrapError):
    """The ledger was opened without a key-encryption key, so it can neither store nor read data keys."""


@dataclass(frozen=True)
class KeyGrant:
    request_id: str
    data_key: bytes
    tasks_published: bool


class KeyStore:
    def __init__(self, engine: sa.Engine, writer: sa.Engine, wrapper: KeyWrapper | None) -> None:
        self.engine, self.writer, self.wrapper = engine, writer, wrapper

    def _kek(self) -> KeyWrapper:
        if self.wrapper is None:
            raise NoKekError("this ledger was opened without a key-encryption key, so it cannot store "
                             "or read data keys: open it with a KeyWrapper (the pipeline loads "
                             "ERASURE_KEK or <keys dir>/kek, which `erasure keys init` creates)")
        return self.wrapper

    def _open(self, request_id: str, stored: bytes) -> bytes:
        wrapper = self._kek()
        # Ledgers written before wrapping hold clear keys: still read; `rewrap` wraps them.
        return stored if is_clear_data_key(stored) else wrapper.unwrap(request_id, stored)

    def grant(self, proposals: dict[str, bytes], now: datetime) -> dict[str, KeyGrant]:
        """Store each request's data key unless one exists; return the key in force.

        A destroyed key is never re-created: its request gets no grant. Its tasks count as published
        once marked so, unless that was `LOST_PLAN_AFTER` ago and the ledger still has no plan.
        """
        if not proposals:
            return {}
        wrapper = self._kek()
        with self.writer.begin() as conn:
            existing = {
                row.request_id: row
                for row in conn.execute(sa.select(data_keys_table).where(
                    data_keys_table.c.request_id.in_(list(proposals))))
            }
            fresh = [{"request_id": rid, "data_key": wrapper.wrap(rid, key), "created_at": now}
                     for rid, key in proposals.items() if rid not in existing]
            if fresh:
                conn.execute(data_keys_table.insert(), fresh)
            planned = set(conn.execute(sa.select(requests_table.c.request_id).where(
                requests_table.c.request_id.in_(list(existing)))).scalars()) if existing else set()
        grants = {}
        for rid, key in proposals.items():
            row = existing.get(rid)
            if row is None:
                grants[rid] = KeyGrant(rid, key, False)
            elif row.data_key is not None:
                published = row.tasks_published_at is not None and (
                    rid in planned or row.tasks_published_at > now - LOST_PLAN_AFTER)
                grants[rid] = KeyGrant(rid, self._open(rid, bytes(row.data_key)), published)
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
        return self._open(request_id, bytes(value)) if value is not None else None

    def data_keys(self, request_ids: Iterable[str]) -> dict[str, bytes | None]:
        """Each request's data key as `data_key` gives it, in one query: None when unknown or destroyed.

        A batch of tasks opens its identities with one round trip instead of one per task.
        """
        ids = list(dict.fromkeys(request_ids))
        found: dict[str, bytes | None] = dict.fromkeys(ids)
        if not ids:
            return {}
        with self.engine.connect() as conn:
            for start in range(0, len(ids), KEYS_PER_QUERY):
                rows = conn.execute(sa.select(data_keys_table.c.request_id, data_keys_table.c.data_key)
                                    .where(data_keys_table.c.request_id.in_(
                                        ids[start:start + KEYS_PER_QUERY]))).all()
                for row in rows:
                    if row.data_key is not None:
                        found[row.request_id] = bytes(row.data_key)
        return {rid: self._open(rid, value) if value is not None else None for rid, value in found.items()}

    def rewrap(self) -> int:
        """Wrap every live key with the current KEK (clear legacy keys, keys of an older KEK); how many."""
        wrapper = self._kek()
        with self.writer.begin() as conn:
            rows = conn.execute(sa.select(data_keys_table.c.request_id, data_keys_table.c.data_key)
                                .where(data_keys_table.c.data_key.is_not(None))).all()
            stored = {row.request_id: bytes(row.data_key) for row in rows}
            moved = [{"rid": rid, "wrapped": wrapper.wrap(rid, self._open(rid, key))}
                     for rid, key in stored.items()
                     if is_clear_data_key(key) or wrapper.wrapped_with(key) != wrapper.key_id]
            if moved:
                conn.execute(data_keys_table.update()
                             .where(data_keys_table.c.request_id == sa.bindparam("rid"))
                             .values(data_key=sa.bindparam("wrapped")), moved)
        if moved:
            self._truncate_sqlite_wal()
        return len(moved)

    def _truncate_sqlite_wal(self) -> None:
        """Copy the WAL into the database and empty it: the old page images held the key bytes.

        secure_delete (set on every connection) has zeroed them in the database pages.
        """
        if self.engine.dialect.name != "sqlite":
            return
        with self.engine.connect() as conn:
            # The driver connection directly: no BEGIN, a checkpoint cannot run inside a transaction.
            cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            busy, _, _ = cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            cursor.close()
        if busy:
            log.warning("the ledger's WAL could not be emptied (a reader held it past the busy timeout): "
                        "destroyed keys stay in it until the next checkpoint")

    def destroy(self, now: datetime, grace_s: float) -> int:
        """Destroy the data keys of requests finished over `grace_s` ago; how many.

        Requests needing attention, or with a hold not yet released, keep theirs: their data
        may still have to be erased.
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
                           # a refused request erased nothing: its key has nothing left to open
                           sa.and_(requests_table.c.status.in_(("completed", "refused")),
                                   requests_table.c.completed_at <= cutoff),
                           sa.and_(requests_table.c.status == "completed_with_holds", ~unreleased,
                                   last_release <= cutoff)))
                .limit(DESTROYED_PER_CALL)).scalars())
            if not due:
                return 0
            conn.execute(data_keys_table.update().where(data_keys_table.c.request_id.in_(due))
                         .values(data_key=None, destroyed_at=now))
            chain = open_chain(conn, [dedupe.data_key_destroyed(rid) for rid in due])
            for rid in due:
                chain.append(rid, None, "data_key_destroyed", None, None, {"grace_s": grace_s}, now,
                             dedupe.data_key_destroyed(rid))
            chain.write(conn)
        self._truncate_sqlite_wal()
        return len(due)
