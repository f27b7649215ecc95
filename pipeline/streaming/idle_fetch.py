"""The faust worker's fetch wait: short while events come, about a second once it has been idle.

The worker's consumer asks the broker to hold each empty fetch `transport.FETCH_MAX_WAIT_MS`
(100 ms: Tansu holds a fetch for its whole wait, so a longer one would delay every hop of a
request). Idle, that is ten fetches a second for nothing, in the worker and in the broker.
After `idle.IDLE_AFTER_S` without an event the wait becomes `idle.LONG_FETCH_WAIT_MS`; the
first event puts it back (the same `IdleBackoff` as the connector lanes). aiokafka reads its
fetcher's wait at each fetch request, from faust's consumer thread; this sets that attribute
(an int: the other thread reads either value) and does nothing when faust's structure differs.
"""

from __future__ import annotations

from typing import Any

from pipeline.streaming.transport import FETCH_MAX_WAIT_MS
from pipeline.worker.idle import IdleBackoff


def _fetcher(app: Any) -> Any:
    """aiokafka's fetcher inside faust's consumer thread, or None (not started, another driver)."""
    thread = getattr(app.consumer, "_thread", None)
    consumer = getattr(thread, "_consumer", None)
    return getattr(consumer, "_fetcher", None)


class IdleFetchWait:
    def __init__(self, app: Any, backoff: IdleBackoff | None = None) -> None:
        self.app = app
        self.backoff = backoff or IdleBackoff(short_fetch_wait_ms=FETCH_MAX_WAIT_MS)

    def saw(self, events: int) -> None:
        """The agents took `events` events (0 from the periodic `tick`)."""
        if self.backoff.observe(events, 0):
            fetcher = _fetcher(self.app)
            if fetcher is not None and hasattr(fetcher, "_fetch_max_wait_ms"):
                fetcher._fetch_max_wait_ms = self.wait_ms

    def tick(self) -> None:
        self.saw(0)

    @property
    def wait_ms(self) -> int:
        backoff = self.backoff
        return backoff.long_fetch_wait_ms if backoff.idle else backoff.short_fetch_wait_ms
