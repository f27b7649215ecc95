"""Keyed digests of erased people's identities (erase again after a restore) and sweep submissions.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02

`erasure_identity_digests`: per request and system whose backups are kept (`backup_retention` in
systems.yaml), an HMAC of each normalised identity; `erasure replay` finds the person among a
restored store's rows with them, without the data key. Housekeeping deletes them once the
system's backups made before the erasure have expired. `erasure_sweep_submissions`: the requests
`erasure sweep` submitted under the site's retention rules, so that no run submits one twice.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "erasure_identity_digests",
        sa.Column("request_id", sa.String(36), primary_key=True),
        sa.Column("system", sa.String(64), primary_key=True),
        sa.Column("digest", sa.String(64), primary_key=True),
        sa.Column("backup_retention", sa.String(32), nullable=False),
        sa.Column("recorded_at", Timestamp, nullable=False),
    )
    op.create_index("ix_erasure_identity_digests_system_digest", "erasure_identity_digests",
                    ["system", "digest"])
    op.create_table(
        "erasure_sweep_submissions",
        sa.Column("request_id", sa.String(36), primary_key=True),
        sa.Column("system", sa.String(64), nullable=False),
        sa.Column("rule", sa.String(64), nullable=False),
        sa.Column("submitted_at", Timestamp, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("erasure_sweep_submissions")
    op.drop_index("ix_erasure_identity_digests_system_digest", "erasure_identity_digests")
    op.drop_table("erasure_identity_digests")
