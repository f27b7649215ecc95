"""The ledger's tables (SQLAlchemy Core), the model the migrations are checked against.

Every timestamp column is `UtcDateTime`: UTC at rest, an aware UTC datetime when read,
whatever the database (SQLite and MariaDB keep no time zone, PostgreSQL converts).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime

import sqlalchemy as sa


def utc(moment: datetime | None) -> datetime | None:
    """The same instant as an aware UTC datetime; a naive one is taken as UTC already."""
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class UtcDateTime(sa.types.TypeDecorator[datetime]):
    """`DateTime(timezone=True)` in the schema; UTC in, aware UTC out."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        moment = utc(value)
        if moment is None or dialect.name == "postgresql":
            return moment
        # Columns without a time zone: store the UTC wall clock (what SQLite always stored).
        return moment.replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        return utc(value)


class ChainDateTime(UtcDateTime):
    """A timestamp the hash chain covers, microseconds included: MariaDB and MySQL keep them too
    (`DATETIME(6)`; their `DATETIME` drops them, and the event would no longer verify)."""

    cache_ok = True

    def load_dialect_impl(self, dialect: sa.Dialect) -> sa.types.TypeEngine[datetime]:
        if dialect.name in ("mysql", "mariadb"):
            # Imported here: loading MySQL's dialect costs every other ledger's command start-up.
            from sqlalchemy.dialects import mysql

            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return super().load_dialect_impl(dialect)


metadata = sa.MetaData()

requests_table = sa.Table(
    "erasure_requests", metadata,
    sa.Column("request_id", sa.String(36), primary_key=True),
    sa.Column("subject_ref", sa.String(200), nullable=False, index=True),
    sa.Column("received_at", UtcDateTime, nullable=False),
    sa.Column("due_at", UtcDateTime, nullable=False, index=True),
    sa.Column("planned_at", UtcDateTime, nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
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
# The desk's list, newest first, a page at a time (keyset on received_at, request_id), whole or by
# status or channel; deadlines of requests in progress (overdue, due soon). Migration 0007.
sa.Index("ix_erasure_requests_newest", requests_table.c.received_at, requests_table.c.request_id)
sa.Index("ix_erasure_requests_status_newest", requests_table.c.status, requests_table.c.received_at,
         requests_table.c.request_id)
sa.Index("ix_erasure_requests_channel_newest", requests_table.c.channel, requests_table.c.received_at,
         requests_table.c.request_id)
sa.Index("ix_erasure_requests_status_due", requests_table.c.status, requests_table.c.due_at)

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
    # Re-drives of a silent system: in all, and since it last reported (the backoff's step).
    sa.Column("redrives", sa.Integer, nullable=False, default=0, server_default="0"),
    sa.Column("silent_redrives", sa.Integer, nullable=False, default=0, server_default="0"),
)
# Requests by system (the desk's filter) and each system's rows by status, from the index alone (the
# request id in it: no table row is read). Migration 0007.
sa.Index("ix_erasure_system_outcomes_system_status", systems_table.c.system, systems_table.c.status,
         systems_table.c.request_id)
# The answers of the last weeks (the overview's completion times): final rows by when they were
# updated. Migration 0009.
sa.Index("ix_erasure_system_outcomes_answered", systems_table.c.final, systems_table.c.updated_at)

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
    sa.Column("recorded_at", ChainDateTime, nullable=False),
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

# What `erasure ledger verify` last found intact: the event at `position` and its hash, so the next
# run starts there. Each checkpoint's hash covers the one before; signed when a ledger key exists.
checkpoints_table = sa.Table(
    "erasure_chain_checkpoints", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("position", sa.BigInteger, nullable=False),
    sa.Column("event_hash", sa.String(64), nullable=False),
    sa.Column("mode", sa.String(16), nullable=False),
    sa.Column("verified_at", UtcDateTime, nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Column("signature", sa.String(128)),
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

users_table = sa.Table(
    "desk_users", metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("password_hash", sa.String(256), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
)

clients_table = sa.Table(
    "intake_clients", metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("token_sha256", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
)

sessions_table = sa.Table(
    "desk_sessions", metadata,
    sa.Column("session_sha256", sa.String(64), primary_key=True),
    sa.Column("user_name", sa.String(64), nullable=False, index=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("last_seen_at", UtcDateTime, nullable=False),
)

# Free text officers write (confirmation notes, extension reasons): the hash chain carries only its
# SHA-256, the text lives here, where it can be erased.
notes_table = sa.Table(
    "erasure_notes", metadata,
    sa.Column("request_id", sa.String(36), primary_key=True),
    sa.Column("sha256", sa.String(64), primary_key=True),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("recorded_at", UtcDateTime, nullable=False),
)

# One system row updated by (request, system); callers add the values they set.
system_row_update = systems_table.update().where(
    systems_table.c.request_id == sa.bindparam("b_request_id"),
    systems_table.c.system == sa.bindparam("b_system"))


def chunks(items: Sequence[str], size: int = 500) -> Iterator[Sequence[str]]:
    """Slices small enough for an SQL IN list on every database."""
    for index in range(0, len(items), size):
        yield items[index:index + size]
