"""What the desk reads from the broker for `/metrics` and `/readyz`: each lane's consumer lag and the
dead letters by reason. Computed at scrape time, each call waiting at most `timeout_s` on the broker,
and kept `cache_s` seconds (a scrape every few seconds costs one round of requests).

Both come from the broker's shared state, not from a process's memory, so every desk process reports
the same figures however many workers and connectors run: lag is the group's committed offsets against
the end offsets, per lane (a system's connector group on its task topic; the stream worker's group on
the requests topic for the router and on the outcomes topic for the aggregator). Dead letters are
counted by reading the dead-letter topic (incrementally; from its beginning again when it was made
anew, a broker that lost its state), by consumer and by the kind of reason (`reason_kind`); they are
a count since the topic began: a broker that lost its topics starts them again from zero.

On the embedded broker (Tansu 0.6.0) end offsets are the base offset of the last record batch plus one,
so lag is under-reported when the last batch held several records; it is zero when a lane is caught up
and above zero while records wait.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from kafka import TopicPartition
from pydantic import ValidationError

from pipeline import kafka_clients
from pipeline.kafka_security import PLAINTEXT, KafkaSecurity
from pipeline.streaming import topics
from schemas import DeadLetter

log = logging.getLogger(__name__)

STREAM_GROUP = "erasure-pipeline"  # the faust app's id, its consumer group


class Lane(NamedTuple):
    group: str
    topic: str


def lanes_of(systems: list[str]) -> dict[str, Lane]:
    """The lanes whose lag is reported: the router, the aggregator, and each system's connectors."""
    return {"router": Lane(STREAM_GROUP, topics.REQUESTS), "aggregator": Lane(STREAM_GROUP, topics.OUTCOMES),
            **{s: Lane(f"erasure-connector-{s}", topics.task_topic(s)) for s in systems}}


# What each kind of refusal says (see pipeline.signing, pipeline.crypto, schemas.codec, the worker).
REASON_KINDS = (
    ("unsigned: ", "unsigned"), ("sealed identities: ", "invalid_identity"),
    ("task for system ", "wrong_topic"), ("invalid ", "invalid"),
)
REASON_FRAGMENTS = (
    ("not in the register", "unknown_signer"), ("malformed", "bad_signature"),
    ("does not verify", "bad_signature"), ("may not sign", "not_entitled"),
    ("cannot be opened", "unsealable"), ("identities from the publisher", "unsealable"),
    ("identities inside the pipeline", "unsealable"),
)


def reason_kind(reason: str) -> str:
    """A few words for a dead letter's reason, fit for a metric label (the reason itself names fields)."""
    for prefix, kind in REASON_KINDS:
        if reason.startswith(prefix):
            return kind
    for fragment, kind in REASON_FRAGMENTS:
        if fragment in reason:
            return kind
    return "other"


@dataclass(frozen=True)
class BrokerFigures:
    up: bool
    lag: dict[str, int] = field(default_factory=dict)  # lane -> records not yet committed past
    dead_letters: dict[tuple[str, str], int] = field(default_factory=dict)  # (consumer, reason kind)


class DeadLetterCount:
    """Counts the dead-letter topic's records by consumer and reason kind, reading on from where it was;
    from the beginning again when the topic, its partitions or the reader changed."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], int] = {}
        self._source: tuple[object, str | None, tuple[int, ...]] | None = None

    def refresh(self, reader: Any, topic_id: str | None, partitions: list[int], budget_s: float) -> None:
        assigned = [TopicPartition(topics.DEADLETTER, p) for p in partitions]
        source = (reader, topic_id, tuple(partitions))
        if source != self._source:
            self.counts, self._source = {}, source
            reader.assign(assigned)
            if assigned:
                reader.seek_to_beginning(*assigned)
        deadline = time.monotonic() + budget_s
        while assigned and time.monotonic() < deadline:
            batch = reader.poll(timeout_ms=100, max_records=1000)
            if not batch:
                return
            for records in batch.values():
                for record in records:
                    self._count(record.value)

    def _count(self, value: bytes | None) -> None:
        try:
            letter = DeadLetter.model_validate_json(value or b"")
            key = (letter.consumer, reason_kind(letter.reason))
        except ValidationError:
            key = ("unknown", "unreadable")
        self.counts[key] = self.counts.get(key, 0) + 1


class BrokerProbe:
    """The broker's figures, at most every `cache_s` seconds; thread-safe. `bootstrap()` (the address
    and the client security) raising means no broker is configured (the desk runs without one):
    `figures()` is then None."""

    def __init__(self, bootstrap: Callable[[], tuple[str, KafkaSecurity]], systems: Callable[[], list[str]],
                 *, timeout_s: float = 2.0, cache_s: float = 5.0) -> None:
        self.bootstrap, self.systems = bootstrap, systems
        self.security = PLAINTEXT
        self.timeout_s, self.cache_s = timeout_s, cache_s
        self._lock = threading.Lock()
        self._cached: tuple[float, BrokerFigures | None] | None = None
        self._admin: Any = None
        self._reader: Any = None
        self._dead_letters = DeadLetterCount()

    def figures(self) -> BrokerFigures | None:
        with self._lock:
            if self._cached is not None and time.monotonic() - self._cached[0] < self.cache_s:
                return self._cached[1]
            try:
                address, self.security = self.bootstrap()
            except Exception:  # no broker configured: nothing to report
                figures = None
            else:
                figures = self._read(address)
            self._cached = (time.monotonic(), figures)
            return figures

    def _read(self, address: str) -> BrokerFigures:
        from kafka.errors import KafkaError

        try:
            self._connect(address)
            found = {t["name"]: t for t in self._admin.describe_topics() if t["error_code"] == 0}
            lag = self._lag(found)
            letters = found.get(topics.DEADLETTER, {"topic_id": None, "partitions": []})  # none: none counted
            partitions = sorted(p["partition_index"] for p in letters["partitions"])
            self._dead_letters.refresh(self._reader, letters.get("topic_id"), partitions, self.timeout_s)
        except (KafkaError, OSError, ValueError) as exc:
            log.warning("metrics: the broker did not answer (%s)", type(exc).__name__)
            self.close()
            return BrokerFigures(up=False)
        return BrokerFigures(True, lag, dict(self._dead_letters.counts))

    def _connect(self, address: str) -> None:
        timeout_ms = int(self.timeout_s * 1000)
        options = {"request_timeout_ms": max(timeout_ms, 1000), "bootstrap_timeout_ms": timeout_ms}
        if self._admin is None:
            self._admin = kafka_clients.admin(address, security=self.security, **options)
        if self._reader is None:
            self._reader = kafka_clients.reader(address, security=self.security,
                                                client_id="erasure-desk-metrics", session_timeout_ms=1000,
                                                heartbeat_interval_ms=300, **options)

    def _lag(self, found: dict[str, Any]) -> dict[str, int]:
        from kafka.admin import OffsetSpec

        lanes = {name: lane for name, lane in lanes_of(self.systems()).items() if lane.topic in found}
        partitions = {lane.topic: [TopicPartition(lane.topic, p["partition_index"])
                                   for p in found[lane.topic]["partitions"]] for lane in lanes.values()}
        every = [tp for tps in partitions.values() for tp in tps]
        if not every:
            return {}
        ends = self._admin.list_partition_offsets({tp: OffsetSpec.LATEST for tp in every},
                                                  timeout_ms=int(self.timeout_s * 1000))
        starts = self._admin.list_partition_offsets({tp: OffsetSpec.EARLIEST for tp in every},
                                                    timeout_ms=int(self.timeout_s * 1000))
        groups = sorted({lane.group for lane in lanes.values()})
        committed = self._admin.list_group_offsets({group: None for group in groups})
        lag = {}
        for name, lane in lanes.items():
            done = committed.get(lane.group, {})
            lag[name] = sum(max(0, ends[tp].offset - _position(done.get(tp), starts[tp].offset))
                            for tp in partitions[lane.topic])
        return lag

    def close(self) -> None:
        for client in (self._admin, self._reader):
            if client is not None:
                with contextlib.suppress(Exception):  # already broken: nothing more to release
                    client.close()
        self._admin = self._reader = None


def _position(committed: Any, start: int) -> int:
    """Where a group stands on a partition: its committed offset, or the start when it has none."""
    if committed is None or committed.offset is None or committed.offset < 0:
        return start
    return int(committed.offset)
