"""How long a connector's poll loop waits: short while it works, long once it has been idle a while.

A lane polls with a short wait (`SHORT_POLL_MS`, and the consumer's short fetch wait) so that a
task is picked up, and a finished one committed, within a tenth of a second. A lane that has had
nothing to do for `IDLE_AFTER_S` (no record read, no task in hand) waits `LONG_POLL_MS` per
poll and asks the broker to hold its fetches as long (`LONG_FETCH_WAIT_MS`), so an idle lane's
poll loop and its client turn every two seconds instead of ten times a second. A poll returns
as soon as records come, so the poll wait adds no latency; the fetch wait does: the first task
after a quiet spell may wait up to two seconds (the broker holds an empty fetch for its whole
wait: Tansu does not answer early). The first record read puts the lane back on short waits at
once. Tasks held until a later time (`not_before`) are released up to two seconds late.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

from pipeline.kafka_clients import FETCH_MAX_WAIT_MS

SHORT_POLL_MS = 100
LONG_POLL_MS = 2000
LONG_FETCH_WAIT_MS = 2000
IDLE_AFTER_S = 10.0


class Polled(Protocol):
    """The consumer the loop polls; `set_fetch_max_wait_ms` is optional (`LaneConsumer` has it)."""

    def poll(self, timeout_ms: int = 0) -> dict[Any, list[Any]]: ...


class IdleBackoff:
    """Asked by the poll loop for its next wait; told what each poll brought and the work in hand."""

    def __init__(self, short_ms: int = SHORT_POLL_MS, long_ms: int = LONG_POLL_MS,
                 idle_after_s: float = IDLE_AFTER_S, short_fetch_wait_ms: int = FETCH_MAX_WAIT_MS,
                 long_fetch_wait_ms: int = LONG_FETCH_WAIT_MS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.short_ms = short_ms
        self.long_ms = long_ms
        self.idle_after_s = idle_after_s
        self.short_fetch_wait_ms = short_fetch_wait_ms
        self.long_fetch_wait_ms = long_fetch_wait_ms
        self.clock = clock
        self.busy_at = clock()
        self.idle = False

    def timeout_ms(self) -> int:
        """The wait of the next poll."""
        return self.long_ms if self.idle else self.short_ms

    def observe(self, records: int, pending: int) -> bool:
        """After a poll: `records` it returned, `pending` tasks in hand (not counting those held
        until a later time). Whether the lane changed between short and long waits."""
        now = self.clock()
        if records or pending:
            self.busy_at = now
        idle = now - self.busy_at >= self.idle_after_s
        changed, self.idle = idle != self.idle, idle
        return changed

    def poll(self, consumer: Polled, pending: int) -> dict[Any, list[Any]]:
        """Poll `consumer` with the wait the lane's state calls for, then take note of what came;
        the consumer's fetch wait follows the poll wait (when it can be set)."""
        batches = consumer.poll(timeout_ms=self.timeout_ms())
        if self.observe(sum(len(records) for records in batches.values()), pending):
            set_wait = getattr(consumer, "set_fetch_max_wait_ms", None)
            if set_wait is not None:
                set_wait(self.long_fetch_wait_ms if self.idle else self.short_fetch_wait_ms)
        return batches
