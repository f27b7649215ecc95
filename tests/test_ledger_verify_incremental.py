"""Incremental verification: a checkpoint of what was found intact, then only what follows it.

An edit after the checkpoint is named; a checkpoint moved, rewritten or stripped of its signature
is refused or not relied on; events removed after it show; `--full` reads everything again.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from pipeline.ledger import Ledger, chain_head_table, events_table, open_ledger
from pipeline.ledger.checkpoints import LedgerKey, Verification, checkpoint_hash, verify_ledger
from pipeline.ledger.tables import checkpoints_table
from schemas import ErasureOutcome, ErasurePlanned, PlannedTarget, SealedIdentities

# Microseconds on purpose: the chain hashes them, every database must keep them.
T0 = datetime(2026, 11, 26, 9, 0, 0, 250001, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgres", "mariadb"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ledger]:
    url = (f"sqlite:///{tmp_path / 'ledger.db'}" if request.param == "sqlite"
           else request.getfixturevalue(f"{request.param}_url"))
    opened = open_ledger(url)
    yield opened
    opened.close()


def record(ledger: Ledger, count: int, at: datetime = T0) -> None:
    """`count` requests, each planned to two systems that answer: four events each."""
    for offset in range(count):
        rid, now = str(uuid.uuid4()), at + timedelta(seconds=offset, microseconds=offset * 7)
        sealed = SealedIdentities(alg="secretbox-xsalsa20poly1305", key_id=rid, ciphertext="c2VjcmV0")
        targets = [PlannedTarget(system=s, expected_turnaround_s=60) for s in ("brevo", "stripe")]
        ledger.record([
            ErasurePlanned(request_id=rid, received_at=now, due_at=now + timedelta(days=30),
                           subject_ref="sr_i", identities=sealed, planned_at=now, targets=targets),
            ErasureOutcome(request_id=rid, system="brevo", attempt=1, status="erased", occurred_at=now),
            ErasureOutcome(request_id=rid, system="stripe", attempt=1, status="not_found", occurred_at=now),
        ], now)


def tamper(ledger: Ledger, position: int) -> None:
    """Someone with write access rewrites an event's status (its hash left as it was)."""
    with ledger.engine.begin() as conn:
        conn.execute(sa.update(events_table).where(events_table.c.position == position).values(status="held"))


def verify(ledger: Ledger, full: bool = False, key: LedgerKey | None = None) -> Verification:
    return verify_ledger(ledger.engine, ledger.writer, T0 + timedelta(days=1), full=full, key=key)


def head(ledger: Ledger) -> int:
    return ledger.chain_head()[0]


def test_a_second_run_reads_only_the_events_after_the_checkpoint(ledger: Ledger) -> None:
    record(ledger, 3)
    first = verify(ledger)
    assert first.intact and first.mode == "full" and first.checked == 12 and first.checkpoint == 12
    record(ledger, 2, T0 + timedelta(hours=1))
    second = verify(ledger)
    assert second.intact and second.mode == "incremental"
    assert (second.from_position, second.checked, second.checkpoint) == (12, 8, 20)
    third = verify(ledger)
    assert third.intact and third.checked == 0 and third.checkpoint is None
    assert verify(ledger, full=True).checked == 20


def test_an_event_edited_after_the_checkpoint_is_named(ledger: Ledger) -> None:
    record(ledger, 2)
    assert verify(ledger).checkpoint == 8
    record(ledger, 2, T0 + timedelta(hours=1))
    tamper(ledger, 10)
    found = verify(ledger)
    assert found.mode == "incremental" and found.broken_at == 10 and not found.intact
    assert verify(ledger).broken_at == 10, "a failed run records no checkpoint past the edit"


def test_an_edit_before_the_checkpoint_shows_to_a_full_run(ledger: Ledger) -> None:
    record(ledger, 2)
    verify(ledger)
    tamper(ledger, 3)
    assert verify(ledger, full=True).broken_at == 3


def test_the_event_a_checkpoint_names_is_checked_again(ledger: Ledger) -> None:
    record(ledger, 2)
    verify(ledger)
    record(ledger, 1, T0 + timedelta(hours=1))
    tamper(ledger, 8)
    found = verify(ledger)
    assert found.broken_at == 8 and "checkpoint" in (found.problem or "")


def move_checkpoint(ledger: Ledger, to_position: int, rehash: bool, signature: str | None = "keep") -> None:
    """Someone moves the last checkpoint forward, past an event they edited."""
    with ledger.engine.begin() as conn:
        last = conn.execute(sa.select(checkpoints_table).order_by(checkpoints_table.c.id.desc())).first()
        assert last is not None
        event_hash = conn.execute(sa.select(events_table.c.hash).where(
            events_table.c.position == to_position)).scalar_one()
        values: dict[str, object] = {"position": to_position, "event_hash": event_hash}
        if rehash:
            values["hash"] = checkpoint_hash(last.prev_hash, to_position, event_hash, last.mode,
                                             last.verified_at)
        if signature != "keep":
            values["signature"] = signature
        conn.execute(sa.update(checkpoints_table).where(checkpoints_table.c.id == last.id).values(**values))


def test_a_moved_checkpoint_is_refused(ledger: Ledger) -> None:
    record(ledger, 2)
    verify(ledger)
    record(ledger, 2, T0 + timedelta(hours=1))
    tamper(ledger, 10)
    move_checkpoint(ledger, 16, rehash=False)
    found = verify(ledger)
    assert not found.intact and "was altered" in (found.problem or "")


def test_a_signed_checkpoint_cannot_be_moved_without_the_key(ledger: Ledger, tmp_path: Path) -> None:
    key = LedgerKey.create(tmp_path / "keys" / "ledger.key")
    record(ledger, 2)
    assert verify(ledger, key=key).checkpoint == 8
    record(ledger, 2, T0 + timedelta(hours=1))
    tamper(ledger, 10)
    move_checkpoint(ledger, 16, rehash=True)  # a consistent hash: only the signature tells
    found = verify(ledger, key=key)
    assert not found.intact and "not signed by this ledger's key" in (found.problem or "")
    move_checkpoint(ledger, 16, rehash=True, signature=None)  # no signature: not relied on
    stripped = verify(ledger, key=key)
    assert stripped.mode == "full" and stripped.broken_at == 10
    assert os.stat(tmp_path / "keys" / "ledger.key").st_mode & 0o777 == 0o600


def test_events_removed_after_the_checkpoint_show(ledger: Ledger) -> None:
    record(ledger, 3)
    verify(ledger)
    with ledger.engine.begin() as conn:  # the last request's events go, the head is set back
        conn.execute(sa.delete(events_table).where(events_table.c.position > 8))
        last = conn.execute(sa.select(events_table.c.hash).where(events_table.c.position == 8)).scalar_one()
        conn.execute(sa.update(chain_head_table).values(last_position=8, last_hash=last))
    found = verify(ledger)
    assert not found.intact and "events were removed" in (found.problem or "")
    assert head(ledger) == 8


def run_cli(url: str, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": url, "ERASURE_HOME_DIR": str(home)}
    return subprocess.run([sys.executable, "-m", "pipeline.cli", "ledger", *args], env=env,
                          capture_output=True, text=True, timeout=120)


def test_the_command_reports_the_rate_and_signs_its_checkpoints(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    ledger = open_ledger(url)
    record(ledger, 3)
    assert run_cli(url, tmp_path, "key").returncode == 0
    full = run_cli(url, tmp_path, "verify", "--full")
    assert full.returncode == 0, full.stderr
    assert "12 events verified from the first" in full.stdout and "events/s" in full.stdout
    record(ledger, 1, T0 + timedelta(hours=1))
    tamper(ledger, 14)
    broken = run_cli(url, tmp_path, "verify")
    assert broken.returncode != 0 and "chain position 14" in broken.stderr
    with ledger.engine.connect() as conn:
        signatures = conn.execute(sa.select(checkpoints_table.c.signature)).scalars().all()
    assert len(signatures) == 1 and signatures[0], "the checkpoint is signed with the ledger key"
    again = run_cli(url, tmp_path, "key")
    assert again.returncode != 0 and "exists already" in again.stderr
    ledger.close()
