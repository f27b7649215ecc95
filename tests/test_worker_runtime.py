"""The connector worker's loop without a broker: dead letters, delayed tasks, publish-then-commit."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta

import pytest
from kafka import TopicPartition

from connectors.base import EraseResult, RetryableError
from pipeline.codec import encode, now_utc
from pipeline.settings import Settings
from pipeline.streaming import topics
from pipeline.worker import runtime
from pipeline.worker.runtime import Accepted, ConnectorWorker
from pipeline.worker.schedule import DelayQueue
from schemas import DeadLetter, ErasureOutcome, ErasureTask
from tests.worker_fakes import (
    EMAIL,
    NOW,
    SIGNERS,
    Keys,
    MemoryConsumer,
    MemoryProducer,
    Record,
    ScriptedConnector,
    sealed_task,
    task_record,
)

TOPIC = topics.task_topic("crm")
TP = TopicPartition(TOPIC, 0)
SETTINGS = Settings(connector_threads=2, retry_in_process_attempts=1, retry_max_attempts=3)


@pytest.fixture
def keys() -> Keys:
    return Keys()


@pytest.fixture
def parts(keys: Keys) -> Iterator[tuple[ConnectorWorker, MemoryProducer, MemoryConsumer]]:
    producer, consumer = MemoryProducer(), MemoryConsumer()
    worker = ConnectorWorker(SETTINGS, "crm", ScriptedConnector(EraseResult("erased")), "unused:9092", keys,
                             signer=SIGNERS.signer("connector:crm"), verifier=SIGNERS.verifier(),
                             producer=producer, consumer=consumer)
    yield worker, producer, consumer
    worker._pool.shutdown(wait=True)


def committed_positions(worker: ConnectorWorker) -> dict[TopicPartition, int]:
    return {tp: meta.offset for tp, meta in worker.tracker.committable().items()}


def test_a_record_that_is_not_a_task_is_dead_lettered_without_its_values(
        parts: tuple[ConnectorWorker, MemoryProducer, MemoryConsumer]) -> None:
    worker, producer, _ = parts
    worker.accept(TP, Record(7, json.dumps({"request_id": EMAIL}).encode(), key=b"k"))
    [letter] = [DeadLetter.model_validate_json(v) for v in producer.to(topics.DEADLETTER)]
    assert (letter.source_topic, letter.partition, letter.offset) == (TOPIC, 0, 7)
    assert letter.consumer == "connector:crm" and letter.reason.startswith("invalid ErasureTask: ")
    assert EMAIL not in letter.reason
    assert committed_positions(worker) == {TP: 8}


def test_a_task_of_another_system_is_dead_lettered(
        parts: tuple[ConnectorWorker, MemoryProducer, MemoryConsumer], keys: Keys) -> None:
    worker, producer, _ = parts
    worker.accept(TP, Record(0, encode(sealed_task(keys.key, system="billing"))))
    [letter] = [DeadLetter.model_validate_json(v) for v in producer.to(topics.DEADLETTER)]
    assert letter.reason == "task for system 'billing' on the topic of 'crm'"
    assert producer.to(topics.OUTCOMES) == []


def test_a_task_not_yet_due_is_held_and_its_offset_not_committed(
        parts: tuple[ConnectorWorker, MemoryProducer, MemoryConsumer], keys: Keys,
        monkeypatch: pytest.MonkeyPatch) -> None:
    worker, producer, _ = parts
    task = sealed_task(keys.key, attempt=2, not_before=NOW + timedelta(minutes=5))
    monkeypatch.setattr(runtime, "now_utc", lambda: NOW)
    worker.accept(TP, task_record(3, task))
    worker.release_due()
    assert len(worker.delayed) == 1 and committed_positions(worker) == {TP: 3}
    monkeypatch.setattr(runtime, "now_utc", lambda: NOW + timedelta(minutes=5))
    worker.release_due()
    worker._pool.shutdown(wait=True)
    assert len(worker.delayed) == 0
    [outcome] = [ErasureOutcome.model_validate_json(v) for v in producer.to(topics.OUTCOMES)]
    assert (outcome.status, outcome.attempt) == ("erased", 2)
    assert committed_positions(worker) == {TP: 4}


def test_outcome_and_requeued_task_are_published_before_the_offset_is_done(
        parts: tuple[ConnectorWorker, MemoryProducer, MemoryConsumer], keys: Keys) -> None:
    worker, producer, _ = parts
    worker.eraser.connector = ScriptedConnector(RetryableError("crm", "rate limited", retry_after_s=600.0))
    task = sealed_task(keys.key)
    worker.tracker.started(TP, 0)
    worker.process(Accepted(TP, 0, task))
    assert [topic for topic, _, _ in producer.sent] == [topics.OUTCOMES, TOPIC]
    assert all(key == task.request_id.encode() for _, key, _ in producer.sent)
    [again] = [ErasureTask.model_validate_json(v) for v in producer.to(TOPIC)]
    assert again.attempt == 2 and again.not_before is not None and again.not_before > now_utc()
    assert committed_positions(worker) == {TP: 1}


def test_an_unacknowledged_outcome_keeps_the_offset_in_flight(keys: Keys) -> None:
    producer = MemoryProducer(failing=(topics.OUTCOMES,))
    worker = ConnectorWorker(SETTINGS, "crm", ScriptedConnector(EraseResult("erased")), "unused:9092", keys,
                             signer=SIGNERS.signer("connector:crm"), verifier=SIGNERS.verifier(),
                             producer=producer, consumer=MemoryConsumer())
    worker.tracker.started(TP, 0)
    worker.process(Accepted(TP, 0, sealed_task(keys.key)))
    worker._pool.shutdown(wait=True)
    assert worker.tracker.in_flight() == 1 and committed_positions(worker) == {TP: 0}


def test_run_erases_publishes_commits_and_closes(keys: Keys) -> None:
    tasks = [sealed_task(keys.key) for _ in range(3)]
    consumer = MemoryConsumer(batches=[{TP: [task_record(i, t) for i, t in enumerate(tasks)]}])
    producer, connector = MemoryProducer(), ScriptedConnector(EraseResult("not_found"))
    worker = ConnectorWorker(SETTINGS, "crm", connector, "unused:9092", keys,
                             signer=SIGNERS.signer("connector:crm"), verifier=SIGNERS.verifier(),
                             producer=producer, consumer=consumer)
    consumer.when_drained = worker.stop
    worker.run()
    outcomes = [ErasureOutcome.model_validate_json(v) for v in producer.to(topics.OUTCOMES)]
    assert sorted(o.request_id for o in outcomes) == sorted(t.request_id for t in tasks)
    assert consumer.commits[-1] == {TP: 3}
    assert consumer.closed and producer.closed and connector.closed


def test_a_partition_whose_log_the_broker_lost_is_read_from_its_new_beginning(keys: Keys) -> None:
    """Before the loss, the task at offset 40 is held for later; the broker comes back empty and the
    new log's first tasks (offsets 0 and 1) are erased and committed, not held back behind 40. What the
    poll that noticed the loss brought of the old log is left out (it is read again from the new log)."""
    held = sealed_task(keys.key, attempt=2, not_before=now_utc() + timedelta(hours=1))
    stale, fresh = sealed_task(keys.key), [sealed_task(keys.key) for _ in range(2)]
    consumer = MemoryConsumer(batches=[{TP: [task_record(40, held)]},
                                       {TP: [task_record(41, stale)]},
                                       {TP: [task_record(i, t) for i, t in enumerate(fresh)]}],
                              recreations=[set(), {TP}])
    producer = MemoryProducer()
    worker = ConnectorWorker(SETTINGS, "crm", ScriptedConnector(EraseResult("erased")), "unused:9092", keys,
                             signer=SIGNERS.signer("connector:crm"), verifier=SIGNERS.verifier(),
                             producer=producer, consumer=consumer)
    consumer.when_drained = worker.stop
    worker.run()
    erased = {ErasureOutcome.model_validate_json(v).request_id for v in producer.to(topics.OUTCOMES)}
    assert erased == {t.request_id for t in fresh}, "the new log's tasks, not the stale record"
    assert consumer.commits[-1] == {TP: 2}


def test_revoked_partitions_are_committed_then_forgotten(
        parts: tuple[ConnectorWorker, MemoryProducer, MemoryConsumer]) -> None:
    worker, _, consumer = parts
    worker.tracker.started(TP, 4)
    worker.tracker.started(TP, 5)
    worker.tracker.done(TP, 4)
    runtime._Rebalance(worker).on_partitions_revoked([TP])
    assert consumer.commits == [{TP: 5}]
    assert worker.tracker.in_flight() == 0 and committed_positions(worker) == {}


def test_delay_queue_releases_the_due_earliest_first() -> None:
    queue: DelayQueue[str] = DelayQueue()
    queue.push(NOW + timedelta(seconds=30), "late")
    queue.push(NOW + timedelta(seconds=10), "early")
    queue.push(NOW + timedelta(seconds=10), "early, second")
    queue.push(NOW + timedelta(hours=1), "next hour")
    assert queue.pop_due(NOW) == []
    assert queue.pop_due(NOW + timedelta(seconds=30)) == ["early", "early, second", "late"]
    assert len(queue) == 1


def test_a_poll_s_tasks_are_erased_in_chunks_with_one_key_lookup_each_and_fail_alone(keys: Keys) -> None:
    looked_up: list[list[str]] = []

    def many(request_ids: list[str]) -> dict[str, bytes | None]:
        looked_up.append(list(request_ids))
        return {rid: keys(rid) for rid in request_ids}

    def single(request_id: str) -> bytes | None:
        raise AssertionError("a chunk's keys come from one lookup")

    tasks = [sealed_task(keys.key) for _ in range(5)]
    keys.destroyed.add(tasks[1].request_id)
    producer = MemoryProducer()
    worker = ConnectorWorker(SETTINGS, "crm", ScriptedConnector(EraseResult("erased")), "unused:9092", single,
                             signer=SIGNERS.signer("connector:crm"), verifier=SIGNERS.verifier(),
                             producer=producer, consumer=MemoryConsumer(), data_keys=many)
    for offset, task in enumerate(tasks):
        worker.accept(TP, task_record(offset, task))
    worker.release_due()
    worker._pool.shutdown(wait=True)
    assert sorted(map(len, looked_up)) == [2, 3]  # two threads: two chunks
    assert sorted(rid for chunk in looked_up for rid in chunk) == sorted(t.request_id for t in tasks)
    published = map(ErasureOutcome.model_validate_json, producer.to(topics.OUTCOMES))
    outcomes = {o.request_id: o for o in published}
    assert outcomes.pop(tasks[1].request_id).status == "failed"  # its key is gone: it alone fails
    assert {o.status for o in outcomes.values()} == {"erased"} and len(outcomes) == 4
    assert committed_positions(worker) == {TP: 5}


@pytest.mark.parametrize(("ready", "threads", "size"), [
    (1, 8, 1), (8, 8, 1), (9, 8, 2), (64, 8, 8), (500, 8, 8), (3, 1, 3)])
def test_chunks_spread_over_the_pool_s_threads_and_stay_small(ready: int, threads: int, size: int) -> None:
    assert runtime.chunk_size(ready, threads) == size
