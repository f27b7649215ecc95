"""`erasure ledger verify` names the first event that was edited directly in the database.

A verification records a checkpoint; the next one reads only what follows it, so an event edited
before the checkpoint shows to `--full` (see tests/test_ledger_verify_incremental.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from pipeline.ledger import events_table, open_ledger
from schemas import ErasureOutcome, ErasurePlanned, PlannedTarget, SealedIdentities

RID = "3c9d1e2f-4a5b-4c6d-8e7f-901a2b3c4d5e"
T0 = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


def verify(postgres_url: str, tmp_path: Path, *options: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": postgres_url, "ERASURE_HOME_DIR": str(tmp_path)}
    return subprocess.run([sys.executable, "-m", "pipeline.cli", "ledger", "verify", *options], env=env,
                          capture_output=True, text=True, timeout=60)


def test_an_edited_row_is_named(postgres_url: str, tmp_path: Path) -> None:
    ledger = open_ledger(postgres_url)
    sealed = SealedIdentities(alg="secretbox-xsalsa20poly1305", key_id=RID, ciphertext="c2VjcmV0")
    ledger.record([
        ErasurePlanned(request_id=RID, received_at=T0, due_at=T0, subject_ref="sr_v", identities=sealed,
                       planned_at=T0, targets=[PlannedTarget(system="brevo", expected_turnaround_s=60),
                                               PlannedTarget(system="stripe", expected_turnaround_s=60)]),
        ErasureOutcome(request_id=RID, system="brevo", attempt=1, status="erased", occurred_at=T0),
        ErasureOutcome(request_id=RID, system="stripe", attempt=1, status="held", occurred_at=T0)], T0)
    ok = verify(postgres_url, tmp_path)
    assert ok.returncode == 0 and "intact" in ok.stdout
    target = next(e for e in ledger.events(RID) if e.system == "stripe")
    with ledger.engine.begin() as conn:  # someone rewrites history: held becomes erased
        conn.execute(sa.update(events_table).where(events_table.c.id == target.id).values(
            status="erased", payload=target.payload.replace('"held"', '"erased"')))
    broken = verify(postgres_url, tmp_path, "--full")
    assert broken.returncode != 0
    assert f"chain position {target.position}" in broken.stderr and "altered" in broken.stderr
    ledger.close()
