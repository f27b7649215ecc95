"""Ledger calls from the agents: retried in place until they succeed, never given up on.

An exception escaping a faust agent does not get its batch redelivered: the
agent is restarted by its supervisor, and `take_events` acks the batch it had
yielded when the abandoned generator is finalised, so the offsets are committed
past it (checked on faust-streaming 0.15.3 with the Tansu broker). Giving up on
a batch would therefore lose it. Retrying in place keeps the batch unacked until
its ledger write went through; every ledger write the agents make is idempotent,
so a batch that is redelivered anyway (a rebalance, a restart) changes nothing.
The aggregator's docstring says what this covers and what it does not.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from connectors.retry import RetryPolicy

log = logging.getLogger(__name__)

T = TypeVar("T")

LEDGER_RETRY = RetryPolicy(base_s=0.5, multiplier=2.0, cap_s=30.0, jitter=True)


async def until_done(policy: RetryPolicy, what: str, call: Callable[..., T], *args: Any) -> T:
    """`call(*args)` off the event loop, with `policy`'s backoff between failures; no attempt limit."""
    attempt = 0
    while True:
        attempt += 1
        try:
            return await asyncio.to_thread(call, *args)
        except Exception as exc:
            wait_s = policy.backoff_s(attempt)
            # The type only: a database error's text may quote the statement's parameters.
            log.error("%s failed (attempt %d, %s); retrying in %.1f s", what, attempt,
                      type(exc).__name__, wait_s)
            await asyncio.sleep(wait_s)
