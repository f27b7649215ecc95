"""The ledger at a million requests: indexes for the desk's list, and verification checkpoints.

Revision ID: 0007
Revises: 0003
Create Date: 2026-12-02

Requests, newest first, a page at a time (keyset on `received_at, request_id`): in all, by
status, by channel; requests in progress by deadline (overdue, due soon). The status index
becomes the first column of the status-and-date one. System rows by system and status, with
their request id (the desk's system filter reads the index alone).

`erasure_chain_checkpoints`: what `erasure ledger verify` last found intact, so the next run
reads only the events after it.

On MariaDB and MySQL the events' `recorded_at` becomes `DATETIME(6)`: the hash covers its
microseconds, which `DATETIME` dropped (events recorded before keep the second they were
truncated to, and do not verify).

On a large PostgreSQL ledger the index builds block writers for as long as they take (measured
for a million requests on a busy machine: about 5 s for each index on the requests, 80 s for the
one on 8.5 million system rows): run `erasure db upgrade` before starting the pipeline.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

Timestamp = sa.DateTime(timezone=True)
REQUEST_INDEXES = {
    "ix_erasure_requests_newest": ["received_at", "request_id"],
    "ix_erasure_requests_status_newest": ["status", "received_at", "request_id"],
    "ix_erasure_requests_channel_newest": ["channel", "received_at", "request_id"],
    "ix_erasure_requests_status_due": ["status", "due_at"],
}


def upgrade() -> None:
    if op.get_context().dialect.name in ("mysql", "mariadb"):
        # The chain's timestamps keep their microseconds (they are hashed); see ChainDateTime.
        op.alter_column("erasure_events", "recorded_at", type_=mysql.DATETIME(fsp=6), existing_nullable=False)
    for name, columns in REQUEST_INDEXES.items():
        op.create_index(name, "erasure_requests", columns)
    op.drop_index("ix_erasure_requests_status", table_name="erasure_requests")
    op.create_index("ix_erasure_system_outcomes_system_status", "erasure_system_outcomes",
                    ["system", "status", "request_id"])
    op.create_table(
        "erasure_chain_checkpoints",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("position", sa.BigInteger, nullable=False),
        sa.Column("event_hash", sa.String(64), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("verified_at", Timestamp, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("signature", sa.String(128)),
    )


def downgrade() -> None:
    if op.get_context().dialect.name in ("mysql", "mariadb"):
        op.alter_column("erasure_events", "recorded_at", type_=mysql.DATETIME(), existing_nullable=False)
    op.drop_table("erasure_chain_checkpoints")
    op.drop_index("ix_erasure_system_outcomes_system_status", table_name="erasure_system_outcomes")
    op.create_index("ix_erasure_requests_status", "erasure_requests", ["status"])
    for name in REQUEST_INDEXES:
        op.drop_index(name, table_name="erasure_requests")
