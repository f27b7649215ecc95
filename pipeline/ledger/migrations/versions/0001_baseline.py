"""Baseline: the ledger's schema as the code before migrations created it.

Revision ID: 0001
Revises:
Create Date: 2026-05-01

The tables are frozen here as Table objects (not imported from `tables.py`, which moves
on): the same definitions create a new ledger and check one written before migrations
(`adopt`). Timestamps are `DateTime(timezone=True)`, the DDL of `UtcDateTime`.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

GENESIS_HASH = "0" * 64
Timestamp = sa.DateTime(timezone=True)
schema = sa.MetaData()

sa.Table(
    "erasure_requests", schema,
    sa.Column("request_id", sa.String(36), primary_key=True),
    sa.Column("subject_ref", sa.String(200), nullable=False, index=True),
    sa.Column("received_at", Timestamp, nullable=False),
    sa.Column("due_at", Timestamp, nullable=False, index=True),
    sa.Column("planned_at", Timestamp, nullable=False),
    sa.Column("status", sa.String(32), nullable=False, index=True),
    sa.Column("completed_at", Timestamp),
    sa.Column("on_time", sa.Boolean),
    sa.Column("completion_published", sa.Boolean, nullable=False),
    sa.Column("sealed_identities", sa.Text, nullable=False),
    sa.Column("scope", sa.Text),
    sa.Column("channel", sa.String(32)),
    sa.Column("verification", sa.String(32)),
    sa.Column("extension_months", sa.Integer, nullable=False),
    sa.Column("reopened", sa.Integer, nullable=False),
    sa.Column("extension_reason", sa.Text),
)
sa.Table(
    "erasure_system_outcomes", schema,
    sa.Column("request_id", sa.String(36), primary_key=True),
    sa.Column("system", sa.String(64), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("final", sa.Boolean, nullable=False),
    sa.Column("expected_turnaround_s", sa.Float, nullable=False),
    sa.Column("expected_by", Timestamp, nullable=False, index=True),
    sa.Column("updated_at", Timestamp, nullable=False),
    sa.Column("evidence", sa.Text),
    sa.Column("holds", sa.Text),
    sa.Column("error", sa.Text),
)
sa.Table(
    "erasure_events", schema,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("position", sa.BigInteger, nullable=False, unique=True),
    sa.Column("request_id", sa.String(36), nullable=False, index=True),
    sa.Column("system", sa.String(64)),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("attempt", sa.Integer),
    sa.Column("status", sa.String(32)),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("recorded_at", Timestamp, nullable=False),
    sa.Column("dedupe_key", sa.String(200), nullable=False, unique=True),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)
chain_head = sa.Table(
    "erasure_chain_head", schema,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("last_hash", sa.String(64), nullable=False),
    sa.Column("last_position", sa.BigInteger, nullable=False),
)
sa.Table(
    "erasure_data_keys", schema,
    sa.Column("request_id", sa.String(36), primary_key=True),
    sa.Column("data_key", sa.LargeBinary(64)),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("tasks_published_at", Timestamp),
    sa.Column("destroyed_at", Timestamp),
)
sa.Table(
    "erasure_holds", schema,
    sa.Column("request_id", sa.String(36), primary_key=True),
    sa.Column("system", sa.String(64), primary_key=True),
    sa.Column("data_category", sa.String(64), primary_key=True),
    sa.Column("legal_basis", sa.String(200), nullable=False),
    sa.Column("citation", sa.String(200), nullable=False),
    sa.Column("retain_until", Timestamp, nullable=False, index=True),
    sa.Column("recorded_at", Timestamp, nullable=False),
    sa.Column("release_requested_at", Timestamp),
    sa.Column("released_at", Timestamp),
)
sa.Table(
    "erasure_notifications", schema,
    sa.Column("notification_id", sa.String(100), primary_key=True),
    sa.Column("request_id", sa.String(36), nullable=False, index=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("due_at", Timestamp, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("next_attempt_at", Timestamp, nullable=False, index=True),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("delivered_at", Timestamp),
    sa.Column("last_error", sa.String(200)),
)
sa.Table(
    "intake_receipts", schema,
    sa.Column("request_id", sa.String(36), primary_key=True),
    sa.Column("client", sa.String(64), nullable=False),
    sa.Column("body_sha256", sa.String(64), nullable=False),
    sa.Column("received_at", Timestamp, nullable=False),
    sa.Column("due_at", Timestamp, nullable=False),
    sa.Column("accepted_at", Timestamp, nullable=False),
)
sa.Table(
    "desk_users", schema,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("password_hash", sa.String(256), nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
)
sa.Table(
    "intake_clients", schema,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("token_sha256", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", Timestamp, nullable=False),
)


def upgrade() -> None:
    bind = op.get_bind()
    schema.create_all(bind, checkfirst=False)
    _genesis(bind)


def downgrade() -> None:
    schema.drop_all(op.get_bind())


def adopt(conn: sa.Connection) -> None:
    """Take a ledger written before migrations as the baseline, or say why it is not one.

    That code created its tables on start, and the desk's account tables only once the
    desk or the intake had run: those may be missing and are created.
    """
    inspector = sa.inspect(conn)
    existing = set(inspector.get_table_names())
    for table in schema.sorted_tables:
        if table.name in existing:
            missing = {c.name for c in table.columns} - {c["name"] for c in inspector.get_columns(table.name)}
            if missing:
                raise RuntimeError(f"table {table.name} lacks columns {sorted(missing)}: "
                                   "not a ledger this baseline knows")
    schema.create_all(conn, checkfirst=True)
    _genesis(conn)


def _genesis(conn: sa.Connection) -> None:
    """The chain head before the first event: every writer locks and moves this row."""
    if conn.execute(sa.select(chain_head.c.id).where(chain_head.c.id == 1)).first() is None:
        conn.execute(chain_head.insert().values(id=1, last_hash=GENESIS_HASH, last_position=0))
