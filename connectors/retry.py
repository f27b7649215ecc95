"""The one retry policy: how long to wait before attempt n+1, and when to give up.

In the spirit of dramatiq's retries middleware: one object, one backoff function,
used by every place that waits before trying again (processor HTTP calls in
process, the connector worker's re-queue, the aggregator's re-drive of silent
systems, webhook deliveries). A wait the other side announced (Retry-After, a
reset header, a spent daily quota) always wins over our own backoff; it is only
bounded by `announced_cap_s`, so a daily quota is waited out, never hammered.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff `base_s * multiplier^(attempt-1)`, capped, optionally full-jittered."""

    max_attempts: int = 8
    base_s: float = 1.0
    multiplier: float = 2.0
    cap_s: float = 300.0
    jitter: bool = True
    announced_cap_s: float = 26 * 3600.0

    def backoff_s(self, attempt: int) -> float:
        """Our own wait after failed attempt number `attempt` (1-based)."""
        ceiling = min(self.cap_s, self.base_s * (self.multiplier ** max(0, attempt - 1)))
        return random.uniform(0, ceiling) if self.jitter else ceiling

    def wait_s(self, attempt: int, announced_s: float | None = None) -> float:
        """The wait before the next attempt: the other side's announced wait wins."""
        if announced_s is not None:
            return min(max(0.0, announced_s), self.announced_cap_s)
        return self.backoff_s(attempt)

    def next_at(self, now: datetime, attempt: int, announced_s: float | None = None) -> datetime:
        return now + timedelta(seconds=self.wait_s(attempt, announced_s))

    def exhausted(self, attempt: int) -> bool:
        """True once `attempt` attempts have been made and the budget allows no more."""
        return attempt >= self.max_attempts
