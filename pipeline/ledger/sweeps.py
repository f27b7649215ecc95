"""The requests `erasure sweep` submitted, so that a second run submits nobody twice.

A sweep's request id is derived from the rule and the person (`pipeline.sweep.plan`); it is
recorded here once the broker acknowledged it. A run skips every id recorded here or already in
the ledger's requests: no second request for a person the router has not even seen yet.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa

from pipeline.ledger.tables import UtcDateTime, chunks, metadata, requests_table

sweep_submissions_table = sa.Table(
    "erasure_sweep_submissions", metadata,
    sa.Column("request_id", sa.String(36), primary_key=True),
    sa.Column("system", sa.String(64), nullable=False),
    sa.Column("rule", sa.String(64), nullable=False),
    sa.Column("submitted_at", UtcDateTime, nullable=False),
)


class SweepLog:
    def __init__(self, engine: sa.Engine, writer: sa.Engine) -> None:
        self.engine, self.writer = engine, writer

    def known(self, request_ids: Sequence[str]) -> set[str]:
        """Those of these ids submitted by an earlier sweep or already in the ledger."""
        return self._having(request_ids, sweep_submissions_table.c.request_id, requests_table.c.request_id)

    def _having(self, request_ids: Sequence[str], *columns: sa.Column[str]) -> set[str]:
        found: set[str] = set()
        with self.engine.connect() as conn:
            for chunk in chunks(list(request_ids)):
                for column in columns:
                    found.update(conn.execute(sa.select(column).where(column.in_(chunk))).scalars())
        return found

    def record(self, system: str, rule: str, request_ids: Sequence[str], now: datetime) -> None:
        """These ids were acknowledged by the broker (those recorded already are left alone)."""
        fresh = sorted(set(request_ids) - self._having(request_ids, sweep_submissions_table.c.request_id))
        if fresh:
            with self.writer.begin() as conn:
                conn.execute(sweep_submissions_table.insert(), [
                    {"request_id": rid, "system": system, "rule": rule, "submitted_at": now}
                    for rid in fresh])

    def rule_of(self, request_id: str) -> tuple[str, str] | None:
        """(system, rule) of a request a sweep submitted, else None."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(sweep_submissions_table.c.system, sweep_submissions_table.c.rule)
                               .where(sweep_submissions_table.c.request_id == request_id)).first()
        return (row.system, row.rule) if row is not None else None
