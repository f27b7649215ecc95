"""In-memory stand-ins for the connector worker's Kafka clients and a scripted connector."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from kafka import TopicPartition

from connectors.base import EraseResult, TaskContext
from pipeline.codec import encode
from pipeline.crypto import new_data_key, seal_with_data_key
from pipeline.signing import ROUTER
from pipeline.streaming import topics
from schemas import ErasureTask, Identity, SubjectIdentities
from tests.fakes.signers import TestSigners

EMAIL = "camille.durand@example.org"
PERSON = SubjectIdentities(identities=[Identity(identity_type="email", identity_value=EMAIL)])
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SIGNERS = TestSigners("crm")


def sealed_task(data_key: bytes, system: str = "crm", **fields: Any) -> ErasureTask:
    request_id = fields.pop("request_id", str(uuid.uuid4()))
    return ErasureTask(
        request_id=request_id, system=system, attempt=fields.pop("attempt", 1),
        received_at=NOW - timedelta(days=1), due_at=NOW + timedelta(days=29), subject_ref="sr_test",
        identities=seal_with_data_key(data_key, request_id, PERSON), **fields)


class Keys:
    """The ledger's data keys: one per request, absent once destroyed."""

    def __init__(self) -> None:
        self.key = new_data_key()
        self.destroyed: set[str] = set()

    def __call__(self, request_id: str) -> bytes | None:
        return None if request_id in self.destroyed else self.key


class ScriptedConnector:
    """Answers each erase call with the next scripted result, or raises it when it is an exception."""

    system = "crm"

    def __init__(self, *script: EraseResult | Exception) -> None:
        self.script = list(script)
        self.calls: list[tuple[SubjectIdentities, TaskContext]] = []
        self.closed = False

    def erase(self, subject: SubjectIdentities, context: TaskContext) -> EraseResult:
        self.calls.append((subject, context))
        answer = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def close(self) -> None:
        self.closed = True


class _Sent:
    def __init__(self, error: Exception | None = None) -> None:
        self.error = error

    def get(self, timeout: float | None = None) -> object:
        if self.error is not None:
            raise self.error
        return None


class MemoryProducer:
    """Keeps what was sent; sends to a topic in `failing` fail like an unacknowledged send."""

    def __init__(self, failing: tuple[str, ...] = ()) -> None:
        self.sent: list[tuple[str, bytes | None, bytes | None]] = []
        self.headers: list[list[tuple[str, bytes]]] = []  # of each record sent, in order
        self.failing = failing
        self.closed = False

    def send(self, topic: str, value: bytes | None = None, key: bytes | None = None,
             headers: list[tuple[str, bytes]] | None = None) -> _Sent:
        if topic in self.failing:
            return _Sent(TimeoutError(f"{topic} did not acknowledge"))
        self.sent.append((topic, key, value))
        self.headers.append(headers or [])
        return _Sent()

    def to(self, topic: str) -> list[bytes]:
        return [value for t, _, value in self.sent if t == topic and value is not None]

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


@dataclass
class Record:
    offset: int
    value: bytes
    key: bytes | None = None
    headers: list[tuple[str, bytes]] = field(default_factory=list)


def task_record(offset: int, task: ErasureTask, signer: str = ROUTER, topic: str | None = None) -> Record:
    """A task as `signer` published it on `topic` (its own system's topic unless said)."""
    value, key = encode(task), task.request_id.encode()
    topic = topic or topics.task_topic(task.system)
    return Record(offset, value, key, SIGNERS.headers(signer, topic, key, value))


@dataclass
class MemoryConsumer:
    """Hands out the given batches one poll at a time, then calls `when_drained` on the next poll."""

    batches: list[dict[TopicPartition, list[Record]]] = field(default_factory=list)
    when_drained: Callable[[], None] = lambda: None
    commits: list[dict[TopicPartition, int]] = field(default_factory=list)
    listener: Any = None
    closed: bool = False
    # What each poll's check for logs the broker lost finds, one set per poll, in turn.
    recreations: list[set[TopicPartition]] = field(default_factory=list)

    def subscribe(self, topics: list[str], listener: Any = None) -> None:
        self.listener = listener

    def recreated_partitions(self) -> set[TopicPartition]:
        return self.recreations.pop(0) if self.recreations else set()

    def poll(self, timeout_ms: int = 0) -> dict[TopicPartition, list[Record]]:
        if self.batches:
            return self.batches.pop(0)
        self.when_drained()
        return {}

    def commit(self, positions: dict[TopicPartition, Any]) -> None:
        self.commits.append({tp: meta.offset for tp, meta in positions.items()})

    def assignment(self) -> set[TopicPartition]:
        return set()

    def paused(self) -> set[TopicPartition]:
        return set()

    def pause(self, *partitions: TopicPartition) -> None:
        pass

    def resume(self, *partitions: TopicPartition) -> None:
        pass

    def close(self) -> None:
        self.closed = True
