"""The key store: one data key per request, sealing its identities wherever they travel.

Destroying a key is crypto-shredding: every copy of the identities (Kafka, backups,
replays) becomes unreadable at once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from pipeline.ledger import dedupe
from pipeline.ledger.chain import open_chain
from pipeline.ledger.tables import data_keys_table, holds_table, requests_table

DESTROYED_PER_CALL = 1000


@dataclass(frozen=True)
class KeyGrant:
    request_id: str
    data_key: bytes
    tasks_published: bool


class KeyStore:
    def __init__(self, engine: sa.Engine, writer: sa.Engine) -> None:
        self.engine, self.writer = engine, writer

    def grant(self, proposals: dict[str, bytes], now: datetime) -> dict[str, KeyGrant]:
        """Store each request's data key unless one exists; return the key in force.

        A destroyed key is never re-created: its request gets no grant.
        """
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
                           sa.and_(requests_table.c.status == "completed",
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
        return len(due)
