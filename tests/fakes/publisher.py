"""An in-memory `Publisher` for the router, aggregator and housekeeping tests: no broker."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pipeline.streaming import topics
from pipeline.streaming.publishing import Message, Received, dead_letter_message


class MemoryPublisher:
    def __init__(self) -> None:
        self.sent: list[Message] = []

    async def send_all(self, messages: Sequence[Message]) -> None:
        self.sent.extend(messages)

    async def dead_letter(self, record: Received, reason: str, consumer: str) -> None:
        self.sent.append(dead_letter_message(record, reason, consumer))

    def values(self, topic: str) -> list[dict[str, Any]]:
        return [json.loads(m.value) for m in self.sent if m.topic == topic]

    def dead_letters(self) -> list[dict[str, Any]]:
        return self.values(topics.DEADLETTER)
