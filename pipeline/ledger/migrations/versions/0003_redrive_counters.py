"""Re-drive counters on a system's row, so the hash chain records only when a system went silent.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30

`redrives`: how many times the aggregator re-drove the system, in all (what officers see).
`silent_redrives`: the re-drives since the system last reported, the step of the backoff
schedule; the first of a silent period is recorded in the chain, the next ones only counted
here. Rows written before start at 0: their past re-drives are in the chain already.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("erasure_system_outcomes",
                  sa.Column("redrives", sa.Integer, nullable=False, server_default="0"))
    op.add_column("erasure_system_outcomes",
                  sa.Column("silent_redrives", sa.Integer, nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("erasure_system_outcomes") as batch:
        batch.drop_column("silent_redrives")
        batch.drop_column("redrives")
