"""Publishing from the agents and the timers: sent again in place until the broker acknowledges.

An exception escaping a faust agent loses its batch (see `retrying`: the batch is acked when the
abandoned generator is finalised), and one escaping a timer crashes the worker. A broker that is
away, or that has just come back without its state, refuses sends for a while: the embedded
broker (Tansu) answers `UnknownError` when two writes race for the first offset of a partition
it has just created again. So a failed send is retried with backoff, never given up on, like the
agents' ledger writes; the agent waits meanwhile. Sending again is safe: every consumer of the
pipeline is idempotent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from connectors.retry import RetryPolicy
from pipeline.streaming.publishing import Message, Publisher, Received, dead_letter_message

log = logging.getLogger(__name__)

PUBLISH_RETRY = RetryPolicy(base_s=0.5, multiplier=2.0, cap_s=30.0, jitter=True)


class ResendingPublisher:
    """A `Publisher` that sends again what the broker did not acknowledge, until it does."""

    def __init__(self, inner: Publisher, policy: RetryPolicy = PUBLISH_RETRY) -> None:
        self.inner = inner
        self.policy = policy

    async def send_all(self, messages: Sequence[Message]) -> None:
        attempt = 0
        while True:
            attempt += 1
            try:
                await self.inner.send_all(messages)
                return
            except Exception as exc:
                wait_s = self.policy.backoff_s(attempt)
                log.error("publishing %d record(s) failed (attempt %d, %s); sending them again in %.1f s",
                          len(messages), attempt, type(exc).__name__, wait_s)
                await asyncio.sleep(wait_s)

    async def dead_letter(self, record: Received, reason: str, consumer: str) -> None:
        log.warning("%s: dead-lettering %s[%d]@%d: %s", consumer, record.topic, record.partition,
                    record.offset, reason)
        await self.send_all([dead_letter_message(record, reason, consumer)])
