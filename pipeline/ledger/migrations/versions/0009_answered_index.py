"""The overview's completion times: system rows by whether they are final and when they were updated.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30

`ix_erasure_system_outcomes_answered` on `(final, updated_at)`: the officer's overview reads the
answers of the last weeks (final rows updated since a moment) without scanning every system row
(on a million requests, 8.5 million rows of which a few hundred thousand are recent).

On a large PostgreSQL ledger the build blocks writers to the system rows for as long as it takes
(measured for a million requests, 8.5 million system rows, at load average 2: 6 s): run `erasure db
upgrade` before starting the pipeline.
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

ANSWERED_INDEX = "ix_erasure_system_outcomes_answered"


def upgrade() -> None:
    op.create_index(ANSWERED_INDEX, "erasure_system_outcomes", ["final", "updated_at"])


def downgrade() -> None:
    op.drop_index(ANSWERED_INDEX, table_name="erasure_system_outcomes")
