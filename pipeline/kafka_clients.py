"""Kafka clients with the project's settings: the one place producers, consumers and admins are built.

Every producer is idempotent with `acks=all` (at-least-once without duplicates
from the producer's own retries); every consumer reads from `earliest` and
commits by hand after what it produced is acknowledged, with group timings short
enough for the embedded broker (a join completes after about half the session
timeout on Tansu) and a short fetch wait (Tansu holds a fetch for the whole wait
when it had nothing at request time); a lane that has been idle a while lengthens its
fetch wait and its polls to about a second (`pipeline.worker.idle`). Each takes the TLS and SASL options of a
`KafkaSecurity` (`KafkaSecurity.from_settings`); plaintext when none is given.

Connector lanes use `LaneConsumer` (`group_consumer`): a group member whose poll loop only
hands tasks to a pool, so its longest stall is one send or one commit (30 s each); its
max-poll interval, which is also the rebalance timeout it asks the broker for, is 60 s rather
than the 300 s the faust worker needs. A lane run by one process only (`sole_owner`, what
`erasure up` does) joins no group at all: it takes every partition of its topic and commits
its offsets to the group with no generation, so a restart after a crash has no rebalance to
wait for, on Tansu (whose group coordinator keeps a dead leader until its session expires)
as on Apache Kafka.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaTimeoutError

from pipeline.kafka_security import PLAINTEXT, KafkaSecurity

# Under a burst a consumer may go seconds between polls; leaving the group then only
# adds a rebalance to the backlog.
MAX_POLL_INTERVAL_S = 300.0
# A connector's poll loop stalls at most for one send or one commit (30 s each, see runtime.py).
LANE_MAX_POLL_INTERVAL_S = 60.0
FETCH_MAX_WAIT_MS = 100
PARTITIONS_WAIT_S = 60.0


def consumer_group_timing(session_timeout_s: float, heartbeat_s: float,
                          max_poll_interval_s: float = LANE_MAX_POLL_INTERVAL_S) -> dict[str, int]:
    return {
        "session_timeout_ms": int(session_timeout_s * 1000),
        "heartbeat_interval_ms": int(heartbeat_s * 1000),
        "max_poll_interval_ms": int(max_poll_interval_s * 1000),
        "request_timeout_ms": max(15_000, int(session_timeout_s * 2500)),
    }


class LaneConsumer(KafkaConsumer):  # type: ignore[misc]
    """A consumer for one lane's topic: a group member, or its sole owner outside any group."""

    def __init__(self, *, sole_owner: bool = False, **settings: Any) -> None:
        super().__init__(**settings)
        self.sole_owner = sole_owner
        self._topic_ids: dict[str, Any] = {}  # topic -> its id when last seen in the metadata

    def subscribe(self, topics: Iterable[str] = (), pattern: str | None = None, listener: Any = None) -> None:
        """In the group, as usual; as sole owner, take every partition (and tell the listener)."""
        if not self.sole_owner:
            super().subscribe(list(topics), pattern=pattern, listener=listener)
            return
        partitions = {TopicPartition(topic, number) for topic in topics for number in self._partitions(topic)}
        self.assign(sorted(partitions))
        if listener is not None:
            listener.on_partitions_assigned(partitions)

    def recreated_partitions(self) -> set[TopicPartition]:
        """The assigned partitions whose topic the broker made again since the last call (another
        topic id in the metadata: a broker restarted without its storage), each moved back to its
        new log's beginning.

        Their positions counted records of a log that is gone. Tansu answers a fetch past a log's
        end with nothing, not OFFSET_OUT_OF_RANGE, so without this a sole owner (no group to lose)
        read nothing until the new log grew past its old position: every task before that was
        skipped. Everything in the new log came after the loss, so all of it is read. kafka-python
        keeps the ids it learns with every metadata refresh (one follows any lost connection);
        reading them costs no request.
        """
        cluster = self._client.cluster
        assigned = self.assignment()
        recreated: set[TopicPartition] = set()
        for topic in {tp.topic for tp in assigned}:
            topic_id = cluster.topic_id(topic)
            if topic_id is None:  # not in the metadata now (gone, or not seen yet)
                continue
            seen = self._topic_ids.setdefault(topic, topic_id)
            if seen != topic_id:
                self._topic_ids[topic] = topic_id
                recreated |= {tp for tp in assigned if tp.topic == topic}
        if recreated:
            self.seek_to_beginning(*recreated)
        return recreated

    def set_fetch_max_wait_ms(self, wait_ms: int) -> None:
        """How long the broker may hold the next fetches when it has nothing: short while the lane
        works, long once it is idle (`pipeline.worker.idle`). kafka-python reads its fetcher's copy
        of the setting at each fetch request; it has no public setter."""
        self._fetcher.config["fetch_max_wait_ms"] = wait_ms

    def _partitions(self, topic: str) -> set[int]:
        deadline = time.monotonic() + PARTITIONS_WAIT_S
        while not (found := self.partitions_for_topic(topic)):
            if time.monotonic() > deadline:
                raise KafkaTimeoutError(f"topic {topic} has no partitions after {PARTITIONS_WAIT_S:.0f} s: "
                                        "create the topics first (`erasure topics`)")
            time.sleep(0.5)
        return set(found)

    def commit(self, offsets: Any = None, timeout_ms: int | None = None) -> None:
        """Commit and wait; inside a rebalance listener, commit without waiting.

        kafka-python 3 calls listeners on its IO thread, where a blocking commit raises
        RuntimeError; raised from `on_partitions_revoked` it ended the lane's poll thread.
        Whatever an unacknowledged commit leaves out is redone by the next owner (idempotent).
        """
        try:
            super().commit(offsets, timeout_ms)
        except RuntimeError as exc:
            if "IO thread" not in str(exc):
                raise
            self.commit_async(offsets)


def producer(bootstrap: str, client_id: str, *, security: KafkaSecurity = PLAINTEXT,
             **options: Any) -> KafkaProducer:
    """An idempotent producer that waits for every in-sync replica."""
    settings: dict[str, Any] = {"acks": "all", "enable_idempotence": True, "client_id": client_id,
                                **security.kafka_python()}
    settings.update(options)
    return KafkaProducer(bootstrap_servers=bootstrap, **settings)


def group_consumer(bootstrap: str, group_id: str, client_id: str, session_timeout_s: float,
                   heartbeat_s: float, *, security: KafkaSecurity = PLAINTEXT, sole_owner: bool = False,
                   **options: Any) -> LaneConsumer:
    """A member of `group_id` (or, `sole_owner`, the one reader committing to it) that commits by hand
    and starts from the earliest record."""
    settings: dict[str, Any] = {
        "group_id": group_id, "client_id": client_id, "enable_auto_commit": False,
        "auto_offset_reset": "earliest", "fetch_max_wait_ms": FETCH_MAX_WAIT_MS,
        **consumer_group_timing(session_timeout_s, heartbeat_s), **security.kafka_python(),
    }
    settings.update(options)
    return LaneConsumer(bootstrap_servers=bootstrap, sole_owner=sole_owner, **settings)


def reader(bootstrap: str, *, security: KafkaSecurity = PLAINTEXT, **options: Any) -> KafkaConsumer:
    """A consumer outside any group, for reading a topic from its beginning (assign + seek)."""
    settings: dict[str, Any] = {"enable_auto_commit": False, "auto_offset_reset": "earliest",
                                "fetch_max_wait_ms": FETCH_MAX_WAIT_MS, **security.kafka_python()}
    settings.update(options)
    return KafkaConsumer(bootstrap_servers=bootstrap, **settings)


def admin(bootstrap: str, *, security: KafkaSecurity = PLAINTEXT, **options: Any) -> Any:
    """An admin client (topics, group offsets)."""
    from kafka.admin import KafkaAdminClient

    settings: dict[str, Any] = {"client_id": "erasure-admin", **security.kafka_python()}
    settings.update(options)
    return KafkaAdminClient(bootstrap_servers=bootstrap, **settings)


def ensure_topics(bootstrap: str, topics: list[str], partitions: int, replication: int = 1,
                  configs: dict[str, dict[str, str]] | None = None, *,
                  security: KafkaSecurity = PLAINTEXT) -> None:
    """Create the topics that do not exist yet (idempotent)."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="erasure-admin",
                             **security.kafka_python())
    try:
        existing = set(admin.list_topics())
        wanted = [NewTopic(t, partitions, replication, topic_configs=(configs or {}).get(t, {}))
                  for t in topics if t not in existing]
        if wanted:
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(wanted)
    finally:
        admin.close()
