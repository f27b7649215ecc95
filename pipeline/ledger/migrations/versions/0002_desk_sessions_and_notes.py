"""Desk sessions (revocable server-side) and officers' notes kept out of the hash chain.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30

`desk_sessions`: one row per logged-in desk session, referred to by the digest of the id in the
signed cookie; deleting the row ends the session. `erasure_notes`: free text officers write
(confirmation notes, extension reasons), keyed by request and SHA-256; the chain carries only the
digest, so the text can be erased. Chain rows written before keep their payloads (and verify).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "desk_sessions",
        sa.Column("session_sha256", sa.String(64), primary_key=True),
        sa.Column("user_name", sa.String(64), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("last_seen_at", Timestamp, nullable=False),
    )
    op.create_index("ix_desk_sessions_user_name", "desk_sessions", ["user_name"])
    op.create_table(
        "erasure_notes",
        sa.Column("request_id", sa.String(36), primary_key=True),
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("recorded_at", Timestamp, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("erasure_notes")
    op.drop_index("ix_desk_sessions_user_name", "desk_sessions")
    op.drop_table("desk_sessions")
