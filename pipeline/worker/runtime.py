"""Connector runtime: one kafka-python consumer group per system, a thread pool of erasures.

The poll thread accepts each task record (a record that is not a task of this
system, or not signed by a signer the register entitles to this system's tasks,
is dead-lettered and never run), holds it until its `not_before` (`schedule`),
then hands it to the pool. A pool thread erases (`erase`), publishes the outcome
(and the task again when it comes back later), signed with this system's
connector key, and only then marks the offset done. A batch connector gets the due
tasks of one poll together, per purpose and at most its `max_batch` at a time: one
call erases them, one wait publishes what they produced, each offset is done once
its own records are acknowledged. Any other connector gets them in chunks spread over
the pool's threads (`chunk_size`): one data-key lookup per chunk, each task erased on its
own (its failure is its own), its outcome sent as soon as it has one, and one wait for
the chunk's acknowledgements, rather than a pool hop, a lookup and a wait per task.
Offsets are committed up to the lowest task still in flight (`offsets`), so a
crash re-delivers, never loses.

A broker that lost its state (the embedded broker restarted on memory storage)
is lived through, not waited out: a producer it made unusable is replaced
(`RenewingProducer`, after any failed send); what was not acknowledged is published again after a
pause, its offset still in flight (the erasure is not run again); a task whose
erasure failed unexpectedly is run again later; and a group the broker forgot
is joined again, its partitions read from the committed offsets (from their
beginning when the broker has none, as after a restart).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any, NamedTuple, Protocol

from kafka import TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import CommitFailedError, KafkaError
from pydantic import ValidationError

from connectors.base import BatchConnector, Connector
from connectors.retention import RetentionPolicy
from pipeline import kafka_clients, liveness
from pipeline.codec import dead_letter, decode, describe_invalid, encode, now_utc
from pipeline.kafka_security import KafkaSecurity
from pipeline.renewing_producer import RenewingProducer
from pipeline.settings import Settings
from pipeline.signing import Headers, Signer, Unverified, Verifier
from pipeline.streaming import topics
from pipeline.worker.erase import DataKeys, Handled, InProcessRetries, TaskEraser, requeue_policy
from pipeline.worker.idle import IdleBackoff
from pipeline.worker.offsets import OffsetTracker
from pipeline.worker.schedule import DelayQueue
from schemas import ErasureTask

log = logging.getLogger(__name__)

# A send not acknowledged by then is sent again, on a new producer (see `publish`).
SEND_TIMEOUT_S = 10.0
# What was not acknowledged (or a task whose erasure failed unexpectedly) is tried again after
# 1, 2, 4... s, at most this long apart, until it succeeds or the worker stops.
AGAIN_BASE_S = 1.0
AGAIN_CAP_S = 30.0
# A chunk of a non-batch connector's tasks is erased one after the other on one pool thread:
# at most this many, so one slow processor call holds back few outcomes.
CHUNK_MAX = 8


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
    generation: int = 0  # the assignment it was read under (see `ConnectorWorker.generation`)
    tries: int = 0  # erasures of it that failed unexpectedly


Record = tuple[str, bytes | None, bytes]  # topic, key, value


class Delivery(NamedTuple):
    """The records one task record produced; its offset is done once the broker has them all."""

    tp: TopicPartition
    offset: int
    generation: int
    records: tuple[Record, ...]
    what: str  # for the logs: which request and attempt, or which dead letter
    tries: int = 0
    status: str | None = None  # the outcome's status (None for a dead letter)


def again_after_s(tries: int) -> float:
    return float(min(AGAIN_CAP_S, AGAIN_BASE_S * 2 ** tries))


def chunk_size(ready: int, threads: int) -> int:
    """Tasks per chunk: every pool thread gets work while there is enough, at most `CHUNK_MAX`."""
    return max(1, min(CHUNK_MAX, -(-ready // max(1, threads))))


Sending = list[tuple[Delivery, list[Sent] | Exception]]  # each delivery and its sends


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    """kafka-python calls these on its network thread: nothing here may wait on the broker."""

    def __init__(self, worker: ConnectorWorker) -> None:
        self.worker = worker

    def on_partitions_revoked(self, revoked: Any) -> None:
        self.worker.commit(wait=False)
        self._forget(set(revoked))

    def on_partitions_lost(self, lost: Any) -> None:
        """Evicted from the group (a broker restarted without its state, a session that expired):
        nothing can be committed; kafka-python reads the partitions again from the committed
        offsets, or from their beginning, once they are assigned again."""
        log.warning("%s: the group lost its member (%d partition(s)); rejoining", self.worker.system,
                    len(lost))
        self._forget(set(lost))

    def _forget(self, partitions: set[TopicPartition]) -> None:
        self.worker.tracker.forget(partitions)
        self.worker.generation += 1  # what is still in flight from before no longer moves offsets

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
                 security: KafkaSecurity | None = None, data_keys: DataKeys | None = None) -> None:
        self.settings = settings
        self.system = system
        self.connector = connector
        self.signer = signer
        self.verifier = verifier
        self.topic = topics.task_topic(system)
        self.eraser = TaskEraser(system, connector, data_key, requeue_policy(settings),
                                 InProcessRetries.from_settings(settings), retention, data_keys=data_keys)
        self.tracker = OffsetTracker()
        self.delayed: DelayQueue[Accepted | Delivery] = DelayQueue()
        self._delayed_lock = threading.Lock()  # pool threads hold back what failed
        self.generation = 0  # moves at each revocation, so tasks read before it mark nothing done
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(settings.connector_threads, thread_name_prefix=system)
        # Due tasks wait here until the poll's records are all read (`release_due`).
        self._ready: list[Accepted] = []
        self.max_batch = connector.max_batch if isinstance(connector, BatchConnector) else 0
        client_id = f"erasure-connector-{system}"
        security = security or KafkaSecurity.from_settings(settings)
        self.producer: Producer | RenewingProducer = producer if producer is not None else RenewingProducer(
            lambda: kafka_clients.producer(bootstrap, client_id, security=security, linger_ms=2),
            f"{system}: connector")
        self.keeper = None if consumer is not None else topics.TopicKeeper(
            bootstrap, [self.topic, topics.OUTCOMES, topics.DEADLETTER], settings.topic_partitions,
            settings.topic_replication_factor, security=security)
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
        if self.keeper is not None:  # the topics this worker reads and writes, when run on its own
            self.keeper.check()
            self.keeper.close()
        self.consumer.subscribe([self.topic], listener=_Rebalance(self))
        log.info("%s: connector worker started on %s", self.system, self.topic)
        paused = False
        beat, taken = liveness.loop_beat(self.settings.heartbeat_file, self.system), 0
        backoff = IdleBackoff()  # short polls while working, long ones once idle (idle.py)
        try:
            while not self._stop.is_set():
                paused = self._flow_control(paused)
                batches = backoff.poll(self.consumer, pending=self.tracker.in_flight() - len(self.delayed))
                batches = self._without_lost_logs(batches)
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

    def _without_lost_logs(self, batches: dict[Any, list[Any]]) -> dict[Any, list[Any]]:
        """A poll's records less those of partitions whose log the broker lost (`recreated_partitions`):
        their offsets in flight name records of the old log (done, they move nothing), and the
        partitions are read again from their new beginning, what this poll brought of them included."""
        recreated = self.consumer.recreated_partitions()
        if not recreated:
            return batches
        log.warning("%s: the broker made %d partition(s) of %s again (restarted without its storage?); "
                    "reading them from their beginning", self.system, len(recreated), self.topic)
        self.tracker.forget(recreated)
        self.generation += 1
        return {tp: records for tp, records in batches.items() if tp not in recreated}

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
            letter = dead_letter(tp.topic, tp.partition, record.offset, reason, f"connector:{self.system}")
            self.publish(Delivery(tp, record.offset, self.generation,
                                  ((topics.DEADLETTER, record.key, letter),),
                                  f"the dead letter of {tp.topic}[{tp.partition}]@{record.offset}"))
            return
        accepted = Accepted(tp, record.offset, task, self.generation)
        if task.not_before is not None and task.not_before > now_utc():
            self.hold(task.not_before, accepted)
            return
        self._ready.append(accepted)  # erased with the poll's other due tasks (`release_due`)

    def hold(self, due: datetime, item: Accepted | Delivery) -> None:
        """Keep a task (or what it produced) until `due`; its offset stays in flight meanwhile."""
        with self._delayed_lock:
            self.delayed.push(due, item)

    def release_due(self) -> None:
        """Hand to the pool what is due: held records and tasks, and the tasks accepted since."""
        with self._delayed_lock:
            due = self.delayed.pop_due(now_utc())
        for item in due:
            if isinstance(item, Delivery):
                self._pool.submit(self.publish, item)
            else:
                self._ready.append(item)
        self._submit_batches()

    def _submit_batches(self) -> None:
        """The ready tasks in batches of one purpose, at most `max_batch` each (a release task
        and an erasure task of the same request are not erased in one call); for a connector
        that does not batch, in chunks (`chunk_size`)."""
        ready, self._ready = self._ready, []
        if not ready:
            return
        if not self.max_batch:
            size = chunk_size(len(ready), self.settings.connector_threads)
            for start in range(0, len(ready), size):
                self._pool.submit(self.process_chunk, ready[start:start + size])
            return
        by_purpose: dict[str, list[Accepted]] = {}
        for accepted in ready:
            by_purpose.setdefault(accepted.task.purpose, []).append(accepted)
        for tasks in by_purpose.values():
            for start in range(0, len(tasks), self.max_batch):
                self._pool.submit(self.process_batch, tasks[start:start + self.max_batch])

    def commit(self, wait: bool = True) -> None:
        """Commit what the tracker allows; `wait=False` (inside a rebalance callback) sends the commit
        without waiting for the answer."""
        positions = self.tracker.committable()
        if not positions:
            return
        try:
            if wait or not hasattr(self.consumer, "commit_async"):
                self.consumer.commit(positions)
            else:
                self.consumer.commit_async(positions)
            self.tracker.committed(positions)
        except (CommitFailedError, KafkaError) as exc:
            log.warning("%s: commit failed (%s); tasks since the last commit will be redone",
                        self.system, type(exc).__name__)

    # -- one task (pool threads) ------------------------------------------------
    def process(self, accepted: Accepted) -> None:
        """Erase, then publish the outcome (and the re-queued task); see `publish`."""
        try:
            handled = self.eraser.erase(accepted.task)
        except Exception as exc:  # not the connector's answer (that is an outcome): run it again later
            self._again([accepted], exc)
            return
        self.publish(self._delivery(accepted, handled))

    def process_chunk(self, chunk: Sequence[Accepted]) -> None:
        """Erase each task alone (one data-key lookup for all), send each outcome once it is
        known, then wait once for the broker; see `publish_all`."""
        try:
            keys = self.eraser.keys_of([accepted.task for accepted in chunk])
        except Exception as exc:  # the key store failed: run them again later
            self._again(chunk, exc)
            return
        producer = self._current_producer()
        sending: Sending = []
        for accepted in chunk:
            try:
                handled = self.eraser.erase(accepted.task, keys)
            except Exception as exc:  # not the connector's answer: run it again later
                self._again([accepted], exc)
                continue
            delivery = self._delivery(accepted, handled)
            sending.append((delivery, self._send(producer, delivery)))
        self._acknowledged(producer, sending)

    def process_batch(self, batch: Sequence[Accepted]) -> None:
        """Erase the batch in one call, then publish what each task produced; see `publish_all`."""
        try:
            handled = self.eraser.erase_batch([accepted.task for accepted in batch])
        except Exception as exc:  # not the connector's answer: run them again later
            self._again(batch, exc)
            return
        log.info("%s: a batch of %d task(s) erased in one call", self.system, len(batch))
        self.publish_all([self._delivery(a, h) for a, h in zip(batch, handled, strict=True)])

    def _again(self, batch: Sequence[Accepted], exc: Exception) -> None:
        for accepted in batch:
            task, wait_s = accepted.task, again_after_s(accepted.tries)
            log.error("%s: request %s attempt %d failed before an outcome (%s); running it again in %.0f s",
                      self.system, task.request_id, task.attempt, type(exc).__name__, wait_s)
            self.hold(now_utc() + timedelta(seconds=wait_s), accepted._replace(tries=accepted.tries + 1))

    def _delivery(self, accepted: Accepted, handled: Handled) -> Delivery:
        task = accepted.task
        key = task.request_id.encode()
        records: list[Record] = [(topics.OUTCOMES, key, encode(handled.outcome))]
        if handled.requeue is not None:
            records.append((self.topic, key, encode(handled.requeue)))
        what = f"request {task.request_id} attempt {task.attempt} -> {handled.outcome.status}"
        return Delivery(accepted.tp, accepted.offset, accepted.generation, tuple(records), what,
                        status=handled.outcome.status)

    def publish(self, delivery: Delivery) -> None:
        self.publish_all([delivery])

    def publish_all(self, deliveries: Sequence[Delivery]) -> None:
        """Publish every delivery's records (signed with this system's connector key), wait once
        for the broker, then mark each offset done whose records it has; publish the others again
        later.

        An offset stays in flight until the broker has every record of its task, so it is never
        committed past (a crash re-delivers the task). A producer the broker made unusable is replaced."""
        producer = self._current_producer()
        self._acknowledged(producer, [(delivery, self._send(producer, delivery)) for delivery in deliveries])

    def _current_producer(self) -> Producer:
        return self.producer.current if isinstance(self.producer, RenewingProducer) else self.producer

    def _acknowledged(self, producer: Producer, sending: Sending) -> None:
        """Wait once for what went out together; mark each offset done whose records all arrived."""
        deadline = time.monotonic() + SEND_TIMEOUT_S
        statuses: Counter[str] = Counter()
        for delivery, futures in sending:
            try:
                if isinstance(futures, Exception):
                    raise futures
                for future in futures:
                    future.get(max(0.0, deadline - time.monotonic()))
            except Exception as exc:
                self._unacknowledged(producer, delivery, exc)
                continue
            if delivery.generation == self.generation:
                self.tracker.done(delivery.tp, delivery.offset)
            log.debug("%s: %s", self.system, delivery.what)
            if delivery.status is not None:
                statuses[delivery.status] += 1
        # One line per chunk or batch at INFO, per task at DEBUG: a line per task was a sizeable
        # share of a lane's CPU (the ledger keeps every outcome; warnings and errors name the request).
        if statuses:
            log.info("%s: %d task(s) -> %s", self.system, sum(statuses.values()),
                     ", ".join(f"{status} {count}" for status, count in sorted(statuses.items())))

    def _send(self, producer: Producer, delivery: Delivery) -> list[Sent] | Exception:
        try:
            return [producer.send(topic, key=key, value=value, headers=self.signer.headers(topic, key, value))
                    for topic, key, value in delivery.records]
        except Exception as exc:
            return exc

    def _unacknowledged(self, producer: Producer, delivery: Delivery, exc: Exception) -> None:
        if isinstance(self.producer, RenewingProducer):
            self.producer.renew(producer, exc)
        wait_s = again_after_s(delivery.tries)
        log.error("%s: %s not acknowledged by the broker (%s); publishing it again in %.0f s",
                  self.system, delivery.what, type(exc).__name__, wait_s)
        self.hold(now_utc() + timedelta(seconds=wait_s), delivery._replace(tries=delivery.tries + 1))
