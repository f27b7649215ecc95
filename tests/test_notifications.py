"""Notifications: signed webhooks a receiver can verify, overdue flagged once, retried until delivered."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pipeline import notifications
from pipeline.deadlines import due_at
from pipeline.ledger import Ledger, open_ledger
from schemas import ErasureOutcome, ErasurePlanned, PlannedTarget, SealedIdentities
from tests.webhook_receiver import SECRET, Receiver

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver(fail_first=1)
    yield server
    server.stop()


def request(ledger: Ledger, received: datetime, finish: bool) -> str:
    rid = str(uuid.uuid4())
    sealed = SealedIdentities(alg="secretbox-xsalsa20poly1305", key_id=rid, ciphertext="c2VjcmV0")
    events: list[ErasurePlanned | ErasureOutcome] = [ErasurePlanned(
        request_id=rid, received_at=received, due_at=due_at(received), subject_ref="sr_x", identities=sealed,
        planned_at=received, targets=[PlannedTarget(system="brevo", expected_turnaround_s=60)])]
    if finish:
        events.append(ErasureOutcome(request_id=rid, system="brevo", attempt=1, status="erased",
                                     occurred_at=NOW))
    ledger.record(events, NOW)
    return rid


def deliver(ledger: Ledger, url: str, now: datetime) -> None:
    for notice in notifications.pending(ledger, now):
        try:
            notifications.post_webhook(url, SECRET, notice)
            notifications.mark(ledger, notice.notification_id, now, None)
        except RuntimeError as exc:
            notifications.mark(ledger, notice.notification_id, now, str(exc))


def test_signature_round_trip_and_refusals() -> None:
    body = b'{"kind":"completed"}'
    header = notifications.sign(SECRET, body, 1_800_000_000)
    assert notifications.verify(SECRET, body, header, now_s=1_800_000_010)
    assert not notifications.verify("other", body, header, now_s=1_800_000_010)
    assert not notifications.verify(SECRET, body + b" ", header, now_s=1_800_000_010)
    assert not notifications.verify(SECRET, body, header, now_s=1_800_001_000), "a replay is refused"


def test_completed_and_overdue_reach_the_webhook_signed_once_each(tmp_path: Path, receiver: Receiver) -> None:
    ledger = open_ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    done = request(ledger, NOW - timedelta(days=1), finish=True)
    late = request(ledger, NOW - timedelta(days=45), finish=False)
    assert notifications.flag_overdue(ledger, NOW) == 1
    assert notifications.flag_overdue(ledger, NOW) == 0, "once per deadline"
    deliver(ledger, receiver.url, NOW)  # the first POST fails (HTTP 500): retried later
    assert len(notifications.pending(ledger, NOW)) == 0, "not before its backoff"
    deliver(ledger, receiver.url, NOW + timedelta(minutes=5))
    assert notifications.pending(ledger, NOW + timedelta(hours=2)) == []
    delivered = {(n["request_id"], n["kind"]) for n, ok in receiver.received if ok}
    assert delivered == {(done, "completed"), (late, "overdue")}
    assert all(ok for _, ok in receiver.received)
    assert len(receiver.received) == 3, "one failure, then each delivered once"
    assert set(receiver.received[-1][0]) == {"event_type", "notification_id", "request_id", "kind", "status",
                                             "due_at", "occurred_at"}, "no personal data"
    ledger.close()
