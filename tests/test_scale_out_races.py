"""Concurrent writers of one ledger on PostgreSQL, and the aggregator's table across a crash.

Scaled out, two workers write the ledger at once: each its own partitions, but a request's
partition changes owner in a rebalance while the old owner may still be writing it, and every
worker's aggregator runs beside the leader's housekeeping and the desk's officers. Each test
makes one interleaving certain: a test connection holds the chain head's lock until the
writers under test are all waiting for it, then lets them go in the order they came.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from pipeline.devstack.probes import wait_until
from pipeline.ledger import Ledger, open_ledger
from pipeline.ledger.actions import retry_system
from pipeline.ledger.tables import chain_head_table
from pipeline.streaming import topics
from pipeline.streaming.aggregator import Aggregator
from schemas import ErasureOutcome, ErasurePlanned
from tests.fakes.publisher import MemoryPublisher
from tests.fakes.signers import TestSigners
from tests.test_aggregator import outcome, plan

NOW = datetime.now(UTC)
SIGNERS = TestSigners("site-db", "brevo")


@pytest.fixture
def ledger(postgres_url: str) -> Iterator[Ledger]:
    ledger = open_ledger(postgres_url)
    yield ledger
    ledger.close()



def one_after_another(url: str, *writers: Callable[[], Any]) -> list[Any]:
    """Run the writers in threads, each started once the one before waits for the chain's lock,
    then release the lock: they get it in the order they asked (PostgreSQL queues row-lock waiters)."""
    engine = sa.create_engine(url)
    results: dict[int, Any] = {}

    def waiting() -> int:
        with engine.connect() as conn:
            return int(conn.execute(sa.text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock'")).scalar_one())

    def run(index: int, writer: Callable[[], Any]) -> None:
        results[index] = writer()

    threads = [threading.Thread(target=run, args=(i, w)) for i, w in enumerate(writers)]
    try:
        with engine.connect() as holder:
            holder.execute(sa.select(chain_head_table).where(chain_head_table.c.id == 1).with_for_update())
            for count, thread in enumerate(threads, start=1):
                thread.start()
                wait_until(lambda n=count: waiting() >= n, 30, f"{count} writer(s) waiting for the chain")  # type: ignore[misc]
            holder.rollback()
        for thread in threads:
            thread.join(30)
    finally:
        engine.dispose()
    assert len(results) == len(writers), "a writer failed (its traceback is above)"
    return [results[i] for i in range(len(writers))]


def test_two_workers_recording_a_request_s_last_outcomes_at_once_complete_it(
        ledger: Ledger, postgres_url: str) -> None:
    """The old owner of a partition records one system's outcome while the new owner records the
    other's: the second to get the lock must see the first's, or the request never completes."""
    rid = str(uuid.uuid4())
    ledger.record([plan(rid)], NOW)
    one_after_another(postgres_url, lambda: ledger.record([outcome(rid, "site-db")], NOW),
                      lambda: ledger.record([outcome(rid, "brevo", "not_found")], NOW))
    view = ledger.request(rid, NOW)
    assert view is not None and view.status == "completed"
    assert [e.kind for e in ledger.events(rid)] == ["planned", "outcome", "outcome", "completed"]
    assert ledger.verify_chain() is None


def test_a_system_that_finished_while_housekeeping_waited_is_not_re_driven(
        ledger: Ledger, postgres_url: str) -> None:
    """The leader's re-drive runs while an aggregator records the outcome it was waiting for."""
    rid = str(uuid.uuid4())
    ledger.record([plan(rid, ("brevo",))], NOW)
    past_turnaround = NOW + timedelta(minutes=5)
    _, redriven = one_after_another(
        postgres_url, lambda: ledger.record([outcome(rid, "brevo")], past_turnaround),
        lambda: ledger.redrive_silent(past_turnaround))
    assert redriven == [], "a finished system was erased again"
    assert [e.kind for e in ledger.events(rid)] == ["planned", "outcome", "completed"]
    view = ledger.request(rid, NOW)
    assert view is not None and view.status == "completed" and view.systems[0].attempt == 1


class Killed(BaseException):
    """What SIGKILL does to a worker in the middle of a ledger write: nothing after it runs."""


class DyingLedger:
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def record(self, *_: Any) -> None:
        raise Killed


def take(aggregator: Aggregator, *events: ErasurePlanned | ErasureOutcome) -> list[Any]:
    batch = [SIGNERS.received(topics.OUTCOMES, i, b"k", e) for i, e in enumerate(events)]
    return asyncio.run(aggregator.take(batch))


def test_a_batch_taken_by_a_worker_killed_mid_write_is_recorded_by_the_partition_s_next_owner(
        ledger: Ledger) -> None:
    """The next owner reads the uncommitted batch again: it is recorded once, and the request completes."""
    rid = str(uuid.uuid4())
    batch = (plan(rid), outcome(rid, "site-db"), outcome(rid, "brevo", "not_found"))
    with pytest.raises(Killed):
        take(Aggregator(DyingLedger(ledger), MemoryPublisher(), SIGNERS.verifier()), *batch)  # type: ignore[arg-type]
    publisher = MemoryPublisher()
    [completion] = take(Aggregator(ledger, publisher, SIGNERS.verifier()), *batch)
    assert completion.request_id == rid and completion.status == "completed"
    assert [e.kind for e in ledger.events(rid)] == ["planned", "outcome", "outcome", "completed"]


def test_an_officer_s_retry_of_a_failed_system_is_recorded_when_it_reports(ledger: Ledger) -> None:
    aggregator = Aggregator(ledger, MemoryPublisher(), SIGNERS.verifier())
    rid = str(uuid.uuid4())
    take(aggregator, plan(rid, ("brevo",)), outcome(rid, "brevo", "failed"))
    assert ledger.request(rid, NOW).status == "needs_attention"  # type: ignore[union-attr]
    task = retry_system(ledger, rid, "brevo", "officer-1", datetime.now(UTC))
    [completion] = take(aggregator, outcome(rid, "brevo", "erased", attempt=task.attempt))
    assert completion.status == "completed"
    view = ledger.request(rid, NOW)
    assert view is not None and view.status == "completed" and view.systems[0].status == "erased"
