"""The periodic jobs without a broker: an in-memory publisher and a real SQLite ledger."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pipeline import notifications
from pipeline.deadlines import due_at
from pipeline.keywrap import AesGcmKeyWrapper
from pipeline.ledger import Ledger, open_ledger
from pipeline.streaming import topics
from pipeline.streaming.housekeeping import Housekeeping
from schemas import ErasureOutcome, ErasurePlanned, PlannedTarget, SealedIdentities
from tests.fakes.publisher import MemoryPublisher

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    ledger = open_ledger(f"sqlite:///{tmp_path / 'ledger.db'}", AesGcmKeyWrapper.generate())
    yield ledger
    ledger.close()


def planned(ledger: Ledger, systems: tuple[str, ...], finish: bool = False) -> str:
    return planned_as(ledger, str(uuid.uuid4()), systems, finish)


def planned_as(ledger: Ledger, rid: str, systems: tuple[str, ...] = ("brevo",), finish: bool = True) -> str:
    sealed = SealedIdentities(alg="secretbox-xsalsa20poly1305", key_id=rid, ciphertext="c2VjcmV0")
    events: list[ErasurePlanned | ErasureOutcome] = [ErasurePlanned(
        request_id=rid, received_at=NOW, due_at=due_at(NOW), subject_ref="sr_x", identities=sealed,
        planned_at=NOW, targets=[PlannedTarget(system=s, expected_turnaround_s=60) for s in systems])]
    if finish:
        events += [ErasureOutcome(request_id=rid, system=s, attempt=1, status="erased", occurred_at=NOW)
                   for s in systems]
    ledger.record(events, NOW)
    return rid


def test_silent_systems_are_re_driven_to_registered_systems_only(ledger: Ledger) -> None:
    publisher = MemoryPublisher()
    rid = planned(ledger, ("brevo", "retired"))
    housekeeping = Housekeeping(ledger, publisher, ["brevo"], data_key_grace_s=0)
    assert asyncio.run(housekeeping.redrive_silent_systems(NOW + timedelta(seconds=30))) == 0, "not yet"
    assert asyncio.run(housekeeping.redrive_silent_systems(NOW + timedelta(minutes=2))) == 1
    [task] = publisher.values(topics.task_topic("brevo"))
    assert (task["request_id"], task["attempt"]) == (rid, 2)
    assert {m.topic for m in publisher.sent} == {topics.task_topic("brevo")}


def test_a_completion_is_announced_and_notified_once(ledger: Ledger) -> None:
    publisher = MemoryPublisher()
    rid = planned(ledger, ("brevo",), finish=True)
    housekeeping = Housekeeping(ledger, publisher, ["brevo"], data_key_grace_s=3600)
    asyncio.run(housekeeping.run(NOW))
    assert publisher.values(topics.COMPLETED) == [], "just recorded: the aggregator announces it"
    asyncio.run(housekeeping.run(NOW + timedelta(seconds=60)))
    asyncio.run(housekeeping.run(NOW + timedelta(seconds=65)))
    assert [c["request_id"] for c in publisher.values(topics.COMPLETED)] == [rid], "unpublished: announced"
    notices = publisher.values(topics.NOTIFICATIONS)
    assert [(n["request_id"], n["kind"]) for n in notices] == [(rid, "completed")]


def test_data_keys_are_shredded_after_the_grace_period(ledger: Ledger) -> None:
    rid = str(uuid.uuid4())
    ledger.grant_data_keys({rid: b"k" * 32}, NOW)
    assert planned_as(ledger, rid) == rid
    housekeeping = Housekeeping(ledger, MemoryPublisher(), ["brevo"], data_key_grace_s=3600)
    assert asyncio.run(housekeeping.shred_data_keys(NOW + timedelta(minutes=59))) == 0
    assert ledger.data_key(rid) == b"k" * 32
    assert asyncio.run(housekeeping.shred_data_keys(NOW + timedelta(hours=1))) == 1
    assert ledger.data_key(rid) is None


def test_an_undelivered_webhook_is_retried_on_the_backoff_schedule(ledger: Ledger) -> None:
    planned(ledger, ("brevo",), finish=True)
    housekeeping = Housekeeping(ledger, MemoryPublisher(), ["brevo"], data_key_grace_s=0,
                                webhook_url="http://127.0.0.1:9/refused", webhook_secret="s")
    asyncio.run(housekeeping.notify(NOW))
    [notice] = notifications.pending(ledger, NOW + timedelta(seconds=10))
    assert notifications.pending(ledger, NOW + timedelta(seconds=9)) == [], "10 s after the first failure"
    notifications.mark(ledger, notice.notification_id, NOW, "again")
    assert notifications.pending(ledger, NOW + timedelta(seconds=19)) == []
    assert len(notifications.pending(ledger, NOW + timedelta(seconds=20))) == 1, "then 20 s"
