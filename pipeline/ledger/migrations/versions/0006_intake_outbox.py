"""The HTTP intake's outbox: requests acknowledged with 202, kept until the ledger shows them planned.

Revision ID: 0006
Revises: 0003
Create Date: 2026-11-30

`intake_outbox`: one row per request the HTTP intake accepted, written with its receipt, holding
the body as the client sent it (identities sealed with the intake key). The relay publishes the
rows that are due (`next_check_at`) until the request is planned, then deletes them; `attempts`
counts the publications the broker acknowledged.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0004"
branch_labels = None
depends_on = None

Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "intake_outbox",
        sa.Column("request_id", sa.String(36), primary_key=True),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("published_at", Timestamp),
        sa.Column("next_check_at", Timestamp, nullable=False),
    )
    op.create_index("ix_intake_outbox_next_check_at", "intake_outbox", ["next_check_at"])


def downgrade() -> None:
    op.drop_index("ix_intake_outbox_next_check_at", "intake_outbox")
    op.drop_table("intake_outbox")
