"""What the router, the aggregator and housekeeping need from the broker, and nothing more.

They read `Received` records (a consumed event with its coordinates) and write
`Message`s through a `Publisher`; `TopicPublisher` is the faust implementation,
which signs every record it sends with the stream worker's key (`signed`): the
router's plans and tasks, housekeeping's re-drives and releases. Keeping faust
out of their signatures lets them run in unit tests against an in-memory
publisher.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, Protocol

from pipeline.codec import dead_letter
from pipeline.signing import Signer
from pipeline.streaming import topics

log = logging.getLogger(__name__)


class Message(NamedTuple):
    """One record to publish: topic name, key, encoded value, and its signature headers once signed."""

    topic: str
    key: bytes
    value: bytes
    headers: Sequence[tuple[str, bytes]] = ()


class Received(NamedTuple):
    """One consumed record and where it came from (its coordinates go into dead letters)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: Sequence[tuple[str, bytes]] = ()


class Publisher(Protocol):
    async def send_all(self, messages: Sequence[Message]) -> None:
        """Publish in order; return once the broker has every one (at-least-once)."""

    async def dead_letter(self, record: Received, reason: str, consumer: str) -> None:
        """Park an event that cannot be processed; `reason` names fields, never values."""


def dead_letter_message(record: Received, reason: str, consumer: str) -> Message:
    return Message(topics.DEADLETTER, record.key or b"",
                   dead_letter(record.topic, record.partition, record.offset, reason, consumer))


def signed(message: Message, signer: Signer) -> Message:
    return message._replace(headers=signer.headers(message.topic, message.key, message.value))


class TopicPublisher:
    """A `Publisher` over faust topics, looked up by name, signing each record.

    Records go straight to the app's producer (faust's, over aiokafka), not through
    `Topic.send`: the topic's channel layer builds a FutureMessage, a PendingMessage, sensor
    state and a done-callback for every record, a cost per message that buys nothing here
    (no attachments, no callbacks). The partitioner is the producer's either way (the key's
    bytes), so a record lands on the partition it did before.
    """

    def __init__(self, faust_topics: Mapping[str, Any], signer: Signer) -> None:
        self.faust_topics = faust_topics
        self.signer = signer
        self._names = {name: topic.get_topic_name() for name, topic in faust_topics.items()}

    async def send_all(self, messages: Sequence[Message]) -> None:
        if not messages:
            return
        producer = await next(iter(self.faust_topics.values())).app.maybe_start_producer()
        pending = []
        for message in messages:
            headers = self.signer.headers(message.topic, message.key, message.value)
            pending.append(await producer.send(self._names[message.topic], message.key, message.value,
                                               None, None, headers))
        await asyncio.gather(*pending)

    async def dead_letter(self, record: Received, reason: str, consumer: str) -> None:
        log.warning("%s: dead-lettering %s[%d]@%d: %s", consumer, record.topic, record.partition,
                    record.offset, reason)
        await self.send_all([dead_letter_message(record, reason, consumer)])
