"""The connector worker with a batch connector, without a broker: a poll's due tasks go in batches.

Batches are of one purpose and at most the connector's `max_batch`; each task's entry is
classified as one task's answer would be; a batch's keys come from one lookup and a task whose
key is gone fails alone; an error of the whole call requeues every task; each offset is done
once its own records are acknowledged.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest
from kafka import TopicPartition

from connectors.base import (
    BatchItem,
    ConnectorError,
    EraseResult,
    PermanentError,
    RetryableError,
    TaskContext,
)
from pipeline.settings import Settings
from pipeline.streaming import topics
from pipeline.worker.erase import DataKeys
from pipeline.worker.runtime import ConnectorWorker
from schemas import ErasureOutcome, ErasureTask, SubjectIdentities
from tests.worker_fakes import (
    EMAIL,
    SIGNERS,
    Keys,
    MemoryConsumer,
    MemoryProducer,
    sealed_task,
    task_record,
)

TOPIC = topics.task_topic("crm")
TP = TopicPartition(TOPIC, 0)
SETTINGS = Settings(connector_threads=2, retry_in_process_attempts=2, retry_in_process_max_wait_s=0.01,
                    retry_max_attempts=3)


@pytest.fixture
def keys() -> Keys:
    return Keys()


class BatchScripted:
    """A batch connector answering each item by its request id (erased unless scripted)."""

    system = "crm"

    def __init__(self, max_batch: int, answers: dict[str, EraseResult | ConnectorError] | None = None,
                 whole: Exception | None = None) -> None:
        self.max_batch = max_batch
        self.answers = answers or {}
        self.whole = whole
        self.batches: list[list[TaskContext]] = []
        self.singles: list[TaskContext] = []
        self._lock = threading.Lock()

    def erase(self, subject: SubjectIdentities, context: TaskContext) -> EraseResult:
        with self._lock:
            self.singles.append(context)
        return EraseResult("erased")

    def erase_batch(self, items: Sequence[BatchItem]) -> list[EraseResult | ConnectorError]:
        with self._lock:
            self.batches.append([item.context for item in items])
        if self.whole is not None:
            raise self.whole
        assert all(item.subject.identities[0].identity_value == EMAIL for item in items)
        return [self.answers.get(item.context.request_id, EraseResult("erased")) for item in items]

    def close(self) -> None:
        pass


class CountedKeys(Keys):
    """The ledger's keys, counting lookups: one per request (`data_key`) or one per batch (`many`)."""

    def __init__(self) -> None:
        super().__init__()
        self.singles: list[str] = []
        self.bulk: list[list[str]] = []

    def __call__(self, request_id: str) -> bytes | None:
        self.singles.append(request_id)
        return super().__call__(request_id)

    def many(self, request_ids: list[str]) -> dict[str, bytes | None]:
        self.bulk.append(list(request_ids))
        return {rid: Keys.__call__(self, rid) for rid in request_ids}


def run_worker(connector: BatchScripted, tasks: list[ErasureTask], keys: Keys,
               producer: MemoryProducer | None = None,
               data_keys: DataKeys | None = None) -> tuple[ConnectorWorker, MemoryProducer]:
    """One poll with every task, then stop."""
    consumer = MemoryConsumer(batches=[{TP: [task_record(i, t) for i, t in enumerate(tasks)]}])
    producer = producer or MemoryProducer()
    worker = ConnectorWorker(SETTINGS, "crm", connector, "unused:9092", keys,
                             signer=SIGNERS.signer("connector:crm"), verifier=SIGNERS.verifier(),
                             producer=producer, consumer=consumer, data_keys=data_keys)
    consumer.when_drained = worker.stop
    worker.run()
    return worker, producer


def outcomes(producer: MemoryProducer) -> dict[str, ErasureOutcome]:
    found = [ErasureOutcome.model_validate_json(v) for v in producer.to(topics.OUTCOMES)]
    assert len(found) == len({o.request_id for o in found})  # one outcome per task
    return {o.request_id: o for o in found}


def test_a_poll_s_tasks_are_erased_in_batches_of_at_most_max_batch(keys: Keys) -> None:
    tasks = [sealed_task(keys.key) for _ in range(7)]
    connector = BatchScripted(max_batch=3)
    worker, producer = run_worker(connector, tasks, keys)
    # In the poll's order, three at a time (the pool's threads may call in any order).
    ids = [t.request_id for t in tasks]
    assert sorted([c.request_id for c in b] for b in connector.batches) == sorted(
        [ids[0:3], ids[3:6], ids[6:7]])
    assert connector.singles == []
    assert {r: o.status for r, o in outcomes(producer).items()} == {t.request_id: "erased" for t in tasks}
    assert worker.tracker.in_flight() == 0
    assert worker.consumer.commits[-1] == {TP: 7}


def test_release_tasks_and_erasures_go_in_separate_batches(keys: Keys) -> None:
    erasures = [sealed_task(keys.key) for _ in range(2)]
    releases = [sealed_task(keys.key, purpose="release", attempt=2, release_categories=["invoices"])
                for _ in range(2)]
    connector = BatchScripted(max_batch=10)
    run_worker(connector, [erasures[0], releases[0], erasures[1], releases[1]], keys)
    batches = {tuple(c.release_categories for c in b) for b in connector.batches}
    assert batches == {(None, None), (("invoices",), ("invoices",))}


def test_each_task_gets_its_own_answer_and_a_task_without_its_key_fails_alone(keys: Keys) -> None:
    found, missing, held, refused, keyless = (sealed_task(keys.key) for _ in range(5))
    keys.destroyed.add(keyless.request_id)
    connector = BatchScripted(max_batch=10, answers={
        missing.request_id: EraseResult("not_found"),
        held.request_id: EraseResult("held"),
        refused.request_id: PermanentError("crm", "this account is locked"),
    })
    _, producer = run_worker(connector, [found, missing, held, refused, keyless], keys)
    assert [len(b) for b in connector.batches] == [4]  # the keyless task never reached the connector
    got = outcomes(producer)
    assert {r: o.status for r, o in got.items()} == {
        found.request_id: "erased", missing.request_id: "not_found", held.request_id: "held",
        refused.request_id: "failed", keyless.request_id: "failed"}
    assert got[refused.request_id].error is not None and got[refused.request_id].error.kind == "permanent"
    assert got[keyless.request_id].error is not None
    assert "data key" in got[keyless.request_id].error.message
    assert producer.to(TOPIC) == []  # nothing comes back later


def test_a_batch_opens_its_identities_with_one_key_lookup_and_a_keyless_task_fails_alone() -> None:
    keys = CountedKeys()
    tasks = [sealed_task(keys.key) for _ in range(5)]
    keyless = tasks[2]
    keys.destroyed.add(keyless.request_id)
    connector = BatchScripted(max_batch=10)
    _, producer = run_worker(connector, tasks, keys, data_keys=keys.many)
    assert sorted(map(sorted, keys.bulk)) == [sorted(t.request_id for t in tasks)]  # one lookup, every id
    assert keys.singles == []
    assert [sorted(c.request_id for c in b) for b in connector.batches] == [
        sorted(t.request_id for t in tasks if t is not keyless)]
    got = outcomes(producer)
    assert {r: o.status for r, o in got.items()} == {
        t.request_id: "failed" if t is keyless else "erased" for t in tasks}
    error = got[keyless.request_id].error
    assert error is not None and error.kind == "permanent" and "data key" in error.message
    assert producer.to(TOPIC) == []


def test_without_a_bulk_lookup_each_task_s_key_is_looked_up_alone() -> None:
    keys = CountedKeys()
    tasks = [sealed_task(keys.key) for _ in range(3)]
    _, producer = run_worker(BatchScripted(max_batch=10), tasks, keys)
    assert sorted(keys.singles) == sorted(t.request_id for t in tasks) and keys.bulk == []
    assert {o.status for o in outcomes(producer).values()} == {"erased"}


def test_an_item_s_retryable_answer_requeues_that_task_only(keys: Keys) -> None:
    slow, fine = sealed_task(keys.key), sealed_task(keys.key)
    connector = BatchScripted(max_batch=10, answers={
        slow.request_id: RetryableError("crm", "this contact is being merged", retry_after_s=120.0)})
    _, producer = run_worker(connector, [slow, fine], keys)
    assert {r: o.status for r, o in outcomes(producer).items()} == {
        slow.request_id: "retrying", fine.request_id: "erased"}
    [again] = [ErasureTask.model_validate_json(v) for v in producer.to(TOPIC)]
    assert (again.request_id, again.attempt) == (slow.request_id, 2)


def test_a_whole_batch_retryable_error_is_retried_in_process_then_requeues_every_task(keys: Keys) -> None:
    tasks = [sealed_task(keys.key) for _ in range(4)]
    connector = BatchScripted(max_batch=10, whole=RetryableError("crm", "bulk endpoint throttled"))
    worker, producer = run_worker(connector, tasks, keys)
    assert [len(b) for b in connector.batches] == [4, 4]  # SETTINGS: two attempts in process
    assert {o.status for o in outcomes(producer).values()} == {"retrying"}
    again = [ErasureTask.model_validate_json(v) for v in producer.to(TOPIC)]
    assert sorted((t.request_id, t.attempt) for t in again) == sorted((t.request_id, 2) for t in tasks)
    assert worker.consumer.commits[-1] == {TP: 4}


def test_an_unacknowledged_outcome_keeps_only_its_own_offset_in_flight(keys: Keys) -> None:
    tasks = [sealed_task(keys.key) for _ in range(3)]

    class OneFails(MemoryProducer):
        def send(self, topic: str, value: bytes | None = None, key: bytes | None = None,
                 headers: list[tuple[str, bytes]] | None = None) -> object:
            if key == tasks[1].request_id.encode():
                raise TimeoutError("not acknowledged")
            return super().send(topic, value, key, headers)

    worker, producer = run_worker(BatchScripted(max_batch=10), tasks, keys, OneFails())
    assert set(outcomes(producer)) == {tasks[0].request_id, tasks[2].request_id}
    assert worker.tracker.in_flight() == 1 and len(worker.delayed) == 1
    assert worker.consumer.commits[-1] == {TP: 1}  # up to the task still in flight, not past it
