"""How a connector's poll loop waits: short polls while it works, a pause between polls once idle.

A lane polls with a short wait (`SHORT_POLL_MS`, and the consumer's short fetch wait) so that a
task is picked up, and a finished one committed, within a tenth of a second. A lane that has had
nothing to do for `IDLE_AFTER_S` (no record read, no task in hand) pauses `LONG_POLL_MS` before
each poll, and polls as briefly as before, so its poll loop and its client turn every two seconds
instead of ten times a second. Nothing is held at the broker during the pause: Tansu keeps
re-reading its log for a held fetch: four lanes each holding a 2 s fetch cost it 0.38 % of a core,
four brief fetches every two seconds 0.25 % (measured on a Tansu of its own). The price is latency: a held
fetch was answered when a record came (within about a second, Tansu re-reads it that often), a
paused lane sees it at its next poll, so the first task after a quiet spell waits up to two
seconds and a tenth (about one on average, against 0.2 to 0.4 s: `bench/lane_wake.py`). The
first record read puts the lane back on polls without pause at once. Tasks held until a later
time (`not_before`) are released up to two seconds late.

The faust worker's fetch wait follows the same state (`pipeline.streaming.idle_fetch`): aiokafka
keeps a fetch in flight, so its idle worker asks the broker to hold it `LONG_FETCH_WAIT_MS`.
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
    """The consumer the loop polls."""

    def poll(self, timeout_ms: int = 0) -> dict[Any, list[Any]]: ...


class IdleBackoff:
    """Asked by the poll loop for its next wait; told what each poll brought and the work in hand."""

    def __init__(self, short_ms: int = SHORT_POLL_MS, long_ms: int = LONG_POLL_MS,
                 idle_after_s: float = IDLE_AFTER_S, short_fetch_wait_ms: int = FETCH_MAX_WAIT_MS,
                 long_fetch_wait_ms: int = LONG_FETCH_WAIT_MS,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], object] = time.sleep) -> None:
        self.short_ms = short_ms
        self.long_ms = long_ms
        self.idle_after_s = idle_after_s
        self.short_fetch_wait_ms = short_fetch_wait_ms
        self.long_fetch_wait_ms = long_fetch_wait_ms
        self.clock = clock
        self.sleep = sleep
        self.busy_at = clock()
        self.idle = False

    def pause_ms(self) -> int:
        """How long the loop waits before its next poll: not at all while busy."""
        return self.long_ms if self.idle else 0

    def observe(self, records: int, pending: int) -> bool:
        """After a poll: `records` it returned, `pending` tasks in hand (not counting those held
        until a later time). Whether the lane changed between busy and idle."""
        now = self.clock()
        if records or pending:
            self.busy_at = now
        idle = now - self.busy_at >= self.idle_after_s
        changed, self.idle = idle != self.idle, idle
        return changed

    def poll(self, consumer: Polled, pending: int) -> dict[Any, list[Any]]:
        """Pause if the lane is idle, then poll `consumer` briefly and take note of what came."""
        if self.idle:
            self.sleep(self.long_ms / 1000)
        batches = consumer.poll(timeout_ms=self.short_ms)
        self.observe(sum(len(records) for records in batches.values()), pending)
        return batches
