"""The intake's outbox: a request the HTTP intake acknowledged, kept in the ledger until it is planned.

The broker may lose what it acknowledged (the embedded broker on memory storage, restarted), so
the HTTP intake answers 202 only once the request is durable here: one row per request, written
in the same transaction as its receipt, holding the body exactly as the client sent it (the
identities sealed with the intake key, `subject_ref` a pseudonym: no identity in clear). A relay
(`pipeline.outbox.OutboxRelay`) publishes the rows that are due until the ledger shows the
request planned, then deletes them.

A row is due `recheck_after_s` after its last publication (1, 2, 4... times that, capped): the
router has planned the request by then unless the broker lost it. (A request whose tasks went out
but whose plan the broker lost before the aggregator recorded it is routed again when it comes
back: see the key store's `LOST_PLAN_AFTER`.)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from pipeline.ledger.tables import UtcDateTime, chunks, metadata, requests_table

# The stream worker reads these from its settings (ERASURE_OUTBOX_RECHECK_*); the desk, which only
# records its own first publication, uses the defaults.
RECHECK_AFTER_S = 30.0
RECHECK_CAP_S = 600.0

outbox_table = sa.Table(
    "intake_outbox", metadata,
    sa.Column("request_id", sa.String(36), primary_key=True),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0, server_default="0"),
    sa.Column("published_at", UtcDateTime),
    sa.Column("next_check_at", UtcDateTime, nullable=False, index=True),
)


@dataclass(frozen=True)
class Unplanned:
    """A request to publish (again): its id, the body as received, how often it went out already."""

    request_id: str
    body: bytes
    attempts: int


@dataclass(frozen=True)
class OutboxFigures:
    pending: int
    oldest_created_at: datetime | None
    republished: int  # rows published more than once: the broker lost them, or the router was late


def add(conn: sa.Connection, request_id: str, body: bytes, now: datetime, first_check_after_s: float) -> None:
    """Keep a request in the outbox (inside the intake's transaction); the relay takes it from
    `first_check_after_s` on, unless the desk publishes it first."""
    conn.execute(outbox_table.insert().values(
        request_id=request_id, body=body.decode(), created_at=now, attempts=0,
        next_check_at=now + timedelta(seconds=first_check_after_s)))


class Outbox:
    def __init__(self, engine: sa.Engine, writer: sa.Engine, recheck_after_s: float = RECHECK_AFTER_S,
                 recheck_cap_s: float = RECHECK_CAP_S) -> None:
        self.engine, self.writer = engine, writer
        self.recheck_after_s, self.recheck_cap_s = recheck_after_s, recheck_cap_s

    def next_check(self, now: datetime, attempts: int) -> datetime:
        wait_s = min(self.recheck_cap_s, self.recheck_after_s * 2 ** max(0, attempts - 1))
        return now + timedelta(seconds=wait_s)

    def due(self, now: datetime, limit: int = 500) -> list[Unplanned]:
        """The rows due now whose request the ledger has not planned; every planned row is deleted.

        Planned rows go whenever they are due or not: a row postponed for minutes would
        otherwise stay after its request was planned (the outbox holds only what is at risk).
        """
        with self.writer.begin() as conn:
            conn.execute(outbox_table.delete().where(
                sa.exists().where(requests_table.c.request_id == outbox_table.c.request_id)))
            rows = conn.execute(
                sa.select(outbox_table.c.request_id, outbox_table.c.body, outbox_table.c.attempts,
                          requests_table.c.request_id.label("planned"))
                .outerjoin(requests_table, requests_table.c.request_id == outbox_table.c.request_id)
                .where(outbox_table.c.next_check_at <= now)
                .order_by(outbox_table.c.next_check_at).limit(limit)).all()
            planned = [r.request_id for r in rows if r.planned is not None]
            for part in chunks(planned):
                conn.execute(outbox_table.delete().where(outbox_table.c.request_id.in_(part)))
            unplanned = [r for r in rows if r.planned is None]
        return [Unplanned(r.request_id, r.body.encode(), r.attempts) for r in unplanned]

    def published(self, request_ids: list[str], now: datetime) -> None:
        """The broker acknowledged these: count the attempt, check again later."""
        if not request_ids:
            return
        with self.writer.begin() as conn:
            attempts = dict(conn.execute(sa.select(outbox_table.c.request_id, outbox_table.c.attempts)
                                         .where(outbox_table.c.request_id.in_(request_ids))).all())
            updates: list[dict[str, Any]] = [
                {"b_rid": rid, "b_attempts": count + 1, "b_next": self.next_check(now, count + 1)}
                for rid, count in attempts.items()]
            if updates:
                conn.execute(outbox_table.update().where(outbox_table.c.request_id == sa.bindparam("b_rid"))
                             .values(attempts=sa.bindparam("b_attempts"), published_at=now,
                                     next_check_at=sa.bindparam("b_next")), updates)

    def postpone(self, request_ids: list[str], now: datetime) -> None:
        """Publishing failed: try these again after the first recheck interval."""
        if request_ids:
            with self.writer.begin() as conn:
                conn.execute(outbox_table.update().where(outbox_table.c.request_id.in_(request_ids))
                             .values(next_check_at=now + timedelta(seconds=self.recheck_after_s)))
