"""Connector runtime: one kafka-python consumer group per system, a thread pool of erasures.

The poll thread accepts each task record (a record that is not a task of this
system, or not signed by a signer the register entitles to this system's tasks,
is dead-lettered and never run), holds it until its `not_before` (`schedule`),
then hands it to the pool. A pool thread erases (`erase`), publishes the outcome
(and the task again when it comes back later), signed with this system's
connector key, and only then marks the offset done.
Offsets are committed up to the lowest task still in flight (`offsets`), so a
crash re-delivers, never loses.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple, Protocol

from kafka import TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import CommitFailedError, KafkaError
from pydantic import ValidationError

from connectors.base import Connector
from connectors.retention import RetentionPolicy
from pipeline import kafka_clients, liveness
from pipeline.codec import dead_letter, decode, describe_invalid, encode, now_utc
from pipeline.kafka_security import KafkaSecurity
from pipeline.settings import Settings
from pipeline.signing import Headers, Signer, Unverified, Verifier
from pipeline.streaming import topics
from pipeline.worker.erase import InProcessRetries, TaskEraser, requeue_policy
from pipeline.worker.offsets import OffsetTracker
from pipeline.worker.schedule import DelayQueue
from schemas import ErasureTask

log = logging.getLogger(__name__)

SEND_TIMEOUT_S = 30.0
POLL_TIMEOUT_MS = 100


class Sent(Protocol):
    def get(self, timeout: float | None = None) -> object: ...


class Producer(Protocol):
    """What the worker needs of a Kafka producer (an in-memory one in unit tests)."""

    def send(self, topic: str, value: bytes | None = None, key: bytes | None = None,
             headers: Headers | None = None) -> Sent: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


class Accepted(NamedTuple):
    tp: TopicPartition
    offset: int
    task: ErasureTask


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, worker: ConnectorWorker) -> None:
        self.worker = worker

    def on_partitions_revoked(self, revoked: Any) -> None:
        self.worker.commit()
        self.worker.tracker.forget(set(revoked))

    def on_partitions_assigned(self, assigned: Any) -> None:
        log.info("%s: assigned %d partition(s)", self.worker.system, len(assigned))


class ConnectorWorker:
    """The tasks of one system: `run()` until `stop()`. Clients are built from settings unless given.

    `signer` is this system's connector key; `verifier` checks each task against the signers register.
    """

    def __init__(self, settings: Settings, system: str, connector: Connector, bootstrap: str,
                 data_key: Callable[[str], bytes | None],
                 retention: RetentionPolicy | None = None, *, signer: Signer, verifier: Verifier,
                 producer: Producer | None = None, consumer: Any = None,
                 security: KafkaSecurity | None = None) -> None:
        self.settings = settings
        self.system = system
        self.connector = connector
        self.signer = signer
        self.verifier = verifier
        self.topic = topics.task_topic(system)
        self.eraser = TaskEraser(system, connector, data_key, requeue_policy(settings),
                                 InProcessRetries.from_settings(settings), retention)
        self.tracker = OffsetTracker()
        self.delayed: DelayQueue[Accepted] = DelayQueue()
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(settings.connector_threads, thread_name_prefix=system)
        client_id = f"erasure-connector-{system}"
        security = security or KafkaSecurity.from_settings(settings)
        self.producer: Producer = producer if producer is not None else kafka_clients.producer(
            bootstrap, client_id, security=security, linger_ms=2)
        self.consumer = consumer if consumer is not None else kafka_clients.group_consumer(
            bootstrap, group_id=client_id, client_id=client_id,
            session_timeout_s=settings.group_session_timeout_s,
            heartbeat_s=settings.group_heartbeat_interval_s,
            max_poll_records=settings.connector_max_in_flight, security=security,
            sole_owner=settings.connector_sole_owner)

    def stop(self) -> None:
        self._stop.set()

    # -- the poll loop (one thread) --------------------------------------------
    def run(self) -> None:
        self.consumer.subscribe([self.topic], listener=_Rebalance(self))
        log.info("%s: connector worker started on %s", self.system, self.topic)
        paused = False
        beat, taken = liveness.loop_beat(self.settings.heartbeat_file, self.system), 0
        try:
            while not self._stop.is_set():
                paused = self._flow_control(paused)
                batches = self.consumer.poll(timeout_ms=POLL_TIMEOUT_MS)
                for tp, records in batches.items():
                    taken += len(records)
                    for record in records:
                        self.accept(tp, record)
                self.release_due()
                self.commit()
                in_flight = self.tracker.in_flight()  # held until due: waiting, not pending
                beat.beat(pending=in_flight - len(self.delayed), done=taken - in_flight)
        finally:
            self._shutdown()

    def _flow_control(self, paused: bool) -> bool:
        """Pause fetching at the in-flight limit, resume below half of it; whether paused now."""
        in_flight = self.tracker.in_flight()
        limit = self.settings.connector_max_in_flight
        if not paused and in_flight >= limit:
            self.consumer.pause(*self.consumer.assignment())
            return True
        if paused and in_flight < limit // 2:
            self.consumer.resume(*self.consumer.paused())
            return False
        return paused

    def _shutdown(self) -> None:
        self._pool.shutdown(wait=True)
        self.commit()
        self.consumer.close()
        self.producer.flush()
        self.producer.close()
        self.connector.close()

    def accept(self, tp: TopicPartition, record: Any) -> None:
        """Take one record: dead-letter it, hold it until due, or hand it to the pool."""
        self.tracker.started(tp, record.offset)
        try:
            task = decode(ErasureTask, record.value)
            if task.system != self.system:
                raise ValueError(f"task for system {task.system!r} on the topic of {self.system!r}")
            self.verifier.check(tp.topic, record.key, record.value, record.headers,
                                "task", task.system)
        except (ValidationError, ValueError, Unverified) as exc:
            reason = describe_invalid(exc) if isinstance(exc, ValidationError) else str(exc)
            log.warning("%s: dead-lettering %s[%d]@%d: %s", self.system, tp.topic, tp.partition,
                        record.offset, reason)
            self.send(topics.DEADLETTER, record.key, dead_letter(
                tp.topic, tp.partition, record.offset, reason, f"connector:{self.system}",
            )).get(SEND_TIMEOUT_S)
            self.tracker.done(tp, record.offset)
            return
        accepted = Accepted(tp, record.offset, task)
        if task.not_before is not None and task.not_before > now_utc():
            self.delayed.push(task.not_before, accepted)
            return
        self._pool.submit(self.process, accepted)

    def release_due(self) -> None:
        for accepted in self.delayed.pop_due(now_utc()):
            self._pool.submit(self.process, accepted)

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

    def send(self, topic: str, key: bytes | None, value: bytes) -> Sent:
        """Publish one record signed with this system's connector key."""
        return self.producer.send(topic, key=key, value=value, headers=self.signer.headers(topic, key, value))

    # -- one task (pool threads) ------------------------------------------------
    def process(self, accepted: Accepted) -> None:
        """Erase, publish the outcome (and the re-queued task), then mark the offset done."""
        task = accepted.task
        try:
            handled = self.eraser.erase(task)
            key = task.request_id.encode()
            sent = [self.send(topics.OUTCOMES, key, encode(handled.outcome))]
            if handled.requeue is not None:
                sent.append(self.send(self.topic, key, encode(handled.requeue)))
            for future in sent:
                future.get(SEND_TIMEOUT_S)
            self.tracker.done(accepted.tp, accepted.offset)
            log.info("%s: request %s attempt %d -> %s", self.system, task.request_id,
                     task.attempt, handled.outcome.status)
        except Exception as exc:  # offset stays in flight: never committed past, so redelivered
            log.error("%s: request %s attempt %d not recorded (%s); it will be redelivered",
                      self.system, task.request_id, task.attempt, type(exc).__name__)
