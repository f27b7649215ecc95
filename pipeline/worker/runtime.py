"""Connector runtime: one kafka-python consumer group per system, a thread pool of erasures.

For each task: open the identities with the request's data key, hand them to
the connector (transient errors retried in process while the wait is short),
publish the outcome, and only then mark the offset done. Offsets are committed
up to the lowest task still in flight, so a crash re-delivers, never loses.
A transient error that outlasts the in-process retries re-queues the task with
the next attempt number and a `not_before` that honours the processor's wait.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import CommitFailedError, KafkaError
from kafka.structs import OffsetAndMetadata
from pydantic import ValidationError

from connectors.base import (
    Connector,
    ConnectorError,
    EraseResult,
    RetryableError,
    TaskContext,
)
from connectors.http import backoff_s, call_with_retries
from connectors.retention import RetentionPolicy
from pipeline.codec import dead_letter, describe_invalid, encode, now_utc
from pipeline.crypto import SealError, open_with_data_key
from pipeline.kafka_clients import consumer_group_timing
from pipeline.settings import Settings
from pipeline.streaming import topics
from schemas import ErasureOutcome, ErasureTask, OutcomeError

log = logging.getLogger(__name__)

SEND_TIMEOUT_S = 30.0
# A broker may hold a fetch for the whole wait when it had nothing at request time (Tansu does).
FETCH_MAX_WAIT_MS = 100


class OffsetTracker:
    """Per partition: offsets in flight; the committable position is the lowest of them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._in_flight: dict[TopicPartition, set[int]] = {}
        self._next: dict[TopicPartition, int] = {}
        self._committed: dict[TopicPartition, int] = {}

    def started(self, tp: TopicPartition, offset: int) -> None:
        with self._lock:
            self._in_flight.setdefault(tp, set()).add(offset)
            self._next[tp] = max(self._next.get(tp, 0), offset + 1)

    def done(self, tp: TopicPartition, offset: int) -> None:
        with self._lock:
            self._in_flight.get(tp, set()).discard(offset)

    def forget(self, partitions: set[TopicPartition]) -> None:
        with self._lock:
            for tp in partitions:
                self._in_flight.pop(tp, None)
                self._next.pop(tp, None)
                self._committed.pop(tp, None)

    def in_flight(self) -> int:
        with self._lock:
            return sum(len(v) for v in self._in_flight.values())

    def committable(self) -> dict[TopicPartition, OffsetAndMetadata]:
        with self._lock:
            positions = {}
            for tp, next_offset in self._next.items():
                pending = self._in_flight.get(tp)
                position = min(pending) if pending else next_offset
                if self._committed.get(tp) != position:
                    positions[tp] = OffsetAndMetadata(position, "", -1)
            return positions

    def committed(self, positions: dict[TopicPartition, OffsetAndMetadata]) -> None:
        with self._lock:
            for tp, meta in positions.items():
                if tp in self._next:
                    self._committed[tp] = meta.offset


@dataclass(order=True)
class Delayed:
    due: datetime
    seq: int
    tp: TopicPartition = field(compare=False)
    offset: int = field(compare=False)
    task: ErasureTask = field(compare=False)


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, worker: ConnectorWorker) -> None:
        self.worker = worker

    def on_partitions_revoked(self, revoked: Any) -> None:
        self.worker.commit()
        self.worker.tracker.forget(set(revoked))

    def on_partitions_assigned(self, assigned: Any) -> None:
        log.info("%s: assigned %d partition(s)", self.worker.system, len(assigned))


class ConnectorWorker:
    def __init__(self, settings: Settings, system: str, connector: Connector, bootstrap: str,
                 data_key: Callable[[str], bytes | None],
                 retention: RetentionPolicy | None = None) -> None:
        self.settings = settings
        self.retention = retention
        self.system = system
        self.connector = connector
        self.bootstrap = bootstrap
        self.data_key = data_key
        self.topic = topics.task_topic(system)
        self.tracker = OffsetTracker()
        self._delayed: list[Delayed] = []
        self._seq = itertools.count()
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(settings.connector_threads, thread_name_prefix=system)
        self.producer = KafkaProducer(
            bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=2,
            client_id=f"erasure-connector-{system}",
        )
        self.consumer = KafkaConsumer(
            bootstrap_servers=bootstrap, group_id=f"erasure-connector-{system}",
            client_id=f"erasure-connector-{system}", enable_auto_commit=False,
            auto_offset_reset="earliest", max_poll_records=settings.connector_max_in_flight,
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
            **consumer_group_timing(settings.group_session_timeout_s,
                                    settings.group_heartbeat_interval_s),
        )

    def stop(self) -> None:
        self._stop.set()

    # -- the poll loop (one thread) --------------------------------------------
    def run(self) -> None:
        self.consumer.subscribe([self.topic], listener=_Rebalance(self))
        log.info("%s: connector worker started on %s", self.system, self.topic)
        paused = False
        try:
            while not self._stop.is_set():
                in_flight = self.tracker.in_flight()
                if not paused and in_flight >= self.settings.connector_max_in_flight:
                    self.consumer.pause(*self.consumer.assignment())
                    paused = True
                elif paused and in_flight < self.settings.connector_max_in_flight // 2:
                    self.consumer.resume(*self.consumer.paused())
                    paused = False
                batches = self.consumer.poll(timeout_ms=100)
                for tp, records in batches.items():
                    for record in records:
                        self._accept(tp, record)
                self._release_due()
                self.commit()
        finally:
            self._pool.shutdown(wait=True)
            self.commit()
            self.consumer.close()
            self.producer.flush()
            self.producer.close()
            self.connector.close()

    def _accept(self, tp: TopicPartition, record: Any) -> None:
        self.tracker.started(tp, record.offset)
        try:
            task = ErasureTask.model_validate_json(record.value)
            if task.system != self.system:
                raise ValueError(f"task for system {task.system!r} on the topic of {self.system!r}")
        except (ValidationError, ValueError) as exc:
            reason = describe_invalid(exc) if isinstance(exc, ValidationError) else str(exc)
            log.warning("%s: dead-lettering %s[%d]@%d: %s", self.system, tp.topic, tp.partition,
                        record.offset, reason)
            self.producer.send(topics.DEADLETTER, key=record.key, value=dead_letter(
                tp.topic, tp.partition, record.offset, reason, f"connector:{self.system}",
            )).get(SEND_TIMEOUT_S)
            self.tracker.done(tp, record.offset)
            return
        if task.not_before is not None and task.not_before > now_utc():
            heapq.heappush(self._delayed, Delayed(task.not_before, next(self._seq), tp,
                                                  record.offset, task))
            return
        self._pool.submit(self._process, tp, record.offset, task)

    def _release_due(self) -> None:
        now = now_utc()
        while self._delayed and self._delayed[0].due <= now:
            item = heapq.heappop(self._delayed)
            self._pool.submit(self._process, item.tp, item.offset, item.task)

    def commit(self) -> None:
        positions = self.tracker.committable()
        if not positions:
            return
        try:
            self.consumer.commit(positions)
            self.tracker.committed(positions)
        except (CommitFailedError, KafkaError) as exc:
            log.warning("%s: commit failed (%s); tasks since the last commit will be redone",
                        self.system, type(exc).__name__)

    # -- one task (pool threads) ------------------------------------------------
    def _process(self, tp: TopicPartition, offset: int, task: ErasureTask) -> None:
        try:
            outcome, requeue = self._erase(task)
            futures = [self.producer.send(topics.OUTCOMES, key=task.request_id.encode(),
                                          value=encode(outcome))]
            if requeue is not None:
                futures.append(self.producer.send(self.topic, key=task.request_id.encode(),
                                                  value=encode(requeue)))
            for future in futures:
                future.get(SEND_TIMEOUT_S)
            self.tracker.done(tp, offset)
            log.info("%s: request %s attempt %d -> %s", self.system, task.request_id,
                     task.attempt, outcome.status)
        except Exception as exc:
            log.error("%s: request %s attempt %d not recorded (%s); it will be redelivered",
                      self.system, task.request_id, task.attempt, type(exc).__name__)

    def _erase(self, task: ErasureTask) -> tuple[ErasureOutcome, ErasureTask | None]:
        now = now_utc()
        base: dict[str, Any] = {"request_id": task.request_id, "system": self.system,
                                "attempt": task.attempt, "purpose": task.purpose}
        key = self.data_key(task.request_id)
        if key is None:
            return ErasureOutcome(**base, status="failed", occurred_at=now, error=OutcomeError(
                kind="permanent", message="the request's data key is missing or destroyed")), None
        try:
            subject = open_with_data_key(key, task.identities)
        except SealError as exc:
            return ErasureOutcome(**base, status="failed", occurred_at=now,
                                  error=OutcomeError(kind="permanent", message=str(exc))), None
        context = TaskContext(
            request_id=task.request_id, system=self.system, attempt=task.attempt, scope=task.scope,
            job_ref=task.job_ref, received_at=task.received_at, retention=self.retention,
            release_categories=tuple(task.release_categories or ()) if task.purpose == "release"
            else None)
        try:
            result: EraseResult = call_with_retries(
                lambda: self.connector.erase(subject, context),
                attempts=self.settings.retry_in_process_attempts,
                max_wait_s=self.settings.retry_in_process_max_wait_s,
                backoff_cap_s=self.settings.retry_in_process_max_wait_s,
            )
        except RetryableError as exc:
            return self._retry_later(task, base, exc)
        except ConnectorError as exc:
            return ErasureOutcome(**base, status="failed", occurred_at=now_utc(), error=OutcomeError(
                kind=exc.kind, message=str(exc)[:500])), None
        except Exception as exc:
            log.error("%s: connector raised %s", self.system, type(exc).__name__)
            return ErasureOutcome(**base, status="failed", occurred_at=now_utc(), error=OutcomeError(
                kind="permanent", message=f"{self.system}: unexpected {type(exc).__name__}")), None
        outcome = ErasureOutcome(**base, status=result.status, holds=result.holds,
                                 evidence=result.evidence, occurred_at=now_utc())
        if result.status == "pending":
            poll_at = now_utc() + timedelta(seconds=result.poll_after_s or 60.0)
            outcome = outcome.model_copy(update={"next_attempt_at": poll_at})
            return outcome, task.model_copy(update={
                "attempt": task.attempt + 1, "not_before": poll_at, "job_ref": result.job_ref})
        return outcome, None

    def _retry_later(self, task: ErasureTask, base: dict[str, Any], exc: RetryableError,
                     ) -> tuple[ErasureOutcome, ErasureTask | None]:
        now = now_utc()
        if task.attempt >= self.settings.retry_max_attempts:
            return ErasureOutcome(**base, status="failed", occurred_at=now, error=OutcomeError(
                kind="retryable", message=f"{exc} (retry budget of "
                f"{self.settings.retry_max_attempts} attempts spent)"[:500])), None
        if exc.retry_after_s is not None:  # the processor said how long: honour it
            wait_s = min(exc.retry_after_s, self.settings.retry_announced_wait_cap_s)
        else:
            wait_s = backoff_s(task.attempt + 3, self.settings.retry_backoff_cap_s)
        next_at = now + timedelta(seconds=wait_s)
        outcome = ErasureOutcome(**base, status="retrying", occurred_at=now, next_attempt_at=next_at,
                                 error=OutcomeError(kind="retryable", message=str(exc)[:500],
                                                    retry_after_s=wait_s))
        return outcome, task.model_copy(update={"attempt": task.attempt + 1, "not_before": next_at})
