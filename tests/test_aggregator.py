"""The aggregator without a broker: in-memory publisher, a dict for the faust table, SQLite ledger."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from connectors.retry import RetryPolicy
from pipeline.deadlines import due_at
from pipeline.ledger import Ledger, open_ledger
from pipeline.streaming import topics
from pipeline.streaming.aggregator import Aggregator
from pipeline.streaming.publishing import Received
from schemas import ErasureOutcome, ErasurePlanned, PlannedTarget, SealedIdentities
from tests.fakes.flaky_ledger import FlakyLedger
from tests.fakes.publisher import MemoryPublisher
from tests.fakes.signers import TestSigners

NOW = datetime.now(UTC)
NO_WAIT = RetryPolicy(base_s=0.0, jitter=False)
SIGNERS = TestSigners("site-db", "brevo")


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    ledger = open_ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    yield ledger
    ledger.close()


def plan(rid: str, systems: tuple[str, ...] = ("site-db", "brevo")) -> ErasurePlanned:
    received = NOW - timedelta(minutes=1)
    return ErasurePlanned(
        request_id=rid, received_at=received, due_at=due_at(received), subject_ref="sr_x",
        identities=SealedIdentities(alg="secretbox-xsalsa20poly1305", key_id=rid, ciphertext="c2VjcmV0"),
        planned_at=received, targets=[PlannedTarget(system=s, expected_turnaround_s=60) for s in systems])


def outcome(rid: str, system: str, status: str = "erased", attempt: int = 1) -> ErasureOutcome:
    return ErasureOutcome(request_id=rid, system=system, attempt=attempt, status=status,  # type: ignore[arg-type]
                          occurred_at=NOW)


def records(*events: BaseModel | bytes, first_offset: int = 0) -> list[Received]:
    return [SIGNERS.received(topics.OUTCOMES, first_offset + i, b"k", e) for i, e in enumerate(events)]


def take(aggregator: Aggregator, *events: BaseModel | bytes) -> list[Any]:
    return asyncio.run(aggregator.take(records(*events)))


def test_a_batch_that_finishes_a_request_is_recorded_and_announced_once(ledger: Ledger) -> None:
    publisher = MemoryPublisher()
    aggregator = Aggregator(ledger, publisher, SIGNERS.verifier())
    rid = str(uuid.uuid4())
    assert take(aggregator, plan(rid), outcome(rid, "site-db")) == []
    [completion] = take(aggregator, outcome(rid, "brevo"))
    assert completion.request_id == rid and completion.status == "completed"
    [announced] = publisher.values(topics.COMPLETED)
    assert announced["request_id"] == rid and announced["status"] == "completed"
    assert [m.key for m in publisher.sent] == [rid.encode()]
    assert ledger.unpublished_completions() == [], "marked published after the publish"
    assert [e.kind for e in ledger.events(rid)] == ["planned", "outcome", "outcome", "completed"]


def test_duplicates_in_a_batch_and_across_batches_and_workers_are_recorded_once(ledger: Ledger) -> None:
    publisher = MemoryPublisher()
    rid = str(uuid.uuid4())
    take(Aggregator(ledger, publisher, SIGNERS.verifier()), plan(rid), plan(rid),
         outcome(rid, "site-db"), outcome(rid, "site-db"))
    assert [e.kind for e in ledger.events(rid)] == ["planned", "outcome"]
    # Redelivered, after a crash, to another worker: the ledger dedupes.
    other = Aggregator(ledger, publisher, SIGNERS.verifier())
    take(other, plan(rid), outcome(rid, "site-db"), outcome(rid, "brevo"))
    take(other, outcome(rid, "brevo"))
    assert [e.kind for e in ledger.events(rid)] == ["planned", "outcome", "outcome", "completed"]
    assert len(publisher.values(topics.COMPLETED)) == 1


def test_invalid_events_are_dead_lettered_and_the_rest_of_the_batch_recorded(ledger: Ledger) -> None:
    publisher = MemoryPublisher()
    rid = str(uuid.uuid4())
    secret = b'{"event_type": "erasure.outcome", "request_id": "x", "system": "brevo", ' \
             b'"identity_value": "someone@example.test"}'
    take(Aggregator(ledger, publisher, SIGNERS.verifier()), b"{not json", secret, plan(rid))
    letters = publisher.dead_letters()
    assert [(d["source_topic"], d["offset"], d["consumer"]) for d in letters] == [
        (topics.OUTCOMES, 0, "aggregator"), (topics.OUTCOMES, 1, "aggregator")]
    assert "someone@example.test" not in str(letters)
    assert [e.kind for e in ledger.events(rid)] == ["planned"]


def test_a_failed_ledger_write_is_retried_in_place_until_it_goes_through(ledger: Ledger) -> None:
    publisher = MemoryPublisher()
    flaky = FlakyLedger(ledger, "record", failures=3)
    aggregator = Aggregator(flaky, publisher, SIGNERS.verifier(), ledger_retry=NO_WAIT)  # type: ignore[arg-type]
    rid = str(uuid.uuid4())
    [completion] = take(aggregator, plan(rid, ("brevo",)), outcome(rid, "brevo"))
    assert flaky.failures == 0
    assert [e.kind for e in ledger.events(rid)] == ["planned", "outcome", "completed"]
    assert len(publisher.values(topics.COMPLETED)) == 1 and completion.request_id == rid


def test_a_release_reaches_the_ledger_and_an_erase_outcome_for_a_final_system_does_not(
        ledger: Ledger) -> None:
    aggregator = Aggregator(ledger, MemoryPublisher(), SIGNERS.verifier())
    rid = str(uuid.uuid4())
    take(aggregator, plan(rid, ("site-db",)), outcome(rid, "site-db", "held"))
    release = ErasureOutcome(request_id=rid, system="site-db", attempt=2, status="erased", purpose="release",
                             occurred_at=NOW)
    take(aggregator, release, outcome(rid, "site-db"))
    assert [e.kind for e in ledger.events(rid)] == ["planned", "outcome", "completed", "released"]
