"""Pacing: each lane stays within its processor's published rate limit.

A limit is declared once per connector type (`PUBLISHED_LIMITS`, with its source) and
can be lowered or raised per system in systems.yaml (`rate_limit:`), for an account on
another plan. Every `ProcessorClient` of a system in this process shares one `Pacer`,
so the lanes' threads together stay under the limit; with several processes per lane,
give each its share (`rate_limit.requests` divided by the number of processes).

The pacer keeps a slot per call of the last window, stamped when the call is answered,
and lets a call go while fewer than `requests` slots are in the window (a sliding
window, slightly widened by `SAFETY_MARGIN`), so no window of the processor's own
counting, fixed or sliding, sees more than the limit. The processor's answers still
win: a throttle with an announced wait (Retry-After, a reset header, a spent daily
quota) or a rate-limit header saying nothing remains holds the whole lane until then.
Only short waits are slept here: a longer one raises a retryable error carrying the
wait, and the client's retry policy or the worker (re-queue with `not_before`) waits it
out, so a lane's poll loop never stalls for minutes.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping

from pydantic import BaseModel, ConfigDict, Field

from connectors.base import RetryableError
from connectors.http import wait_from_headers

SAFETY_MARGIN = 0.02
HOLD_SLEEP_CAP_S = 2.0
IN_FLIGHT_POLL_S = 0.005
Slot = list[float]
REMAINING_HEADERS = ("x-sib-ratelimit-remaining", "x-ratelimit-remaining", "ratelimit-remaining",
                     "x-rate-limit-remaining")


class RateLimit(BaseModel):
    """At most `requests` calls per `per_s` seconds; `source` says where the figure comes from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    requests: int = Field(gt=0)
    per_s: float = Field(gt=0)
    source: str = "systems.yaml"

    @property
    def per_second(self) -> float:
        return self.requests / self.per_s


# The processors' own published limits for the calls an erasure makes. A processor
# whose limit is not a request rate (Mailchimp counts concurrent connections) or is not
# published is absent: its lane is paced by its 429 answers only.
PUBLISHED_LIMITS: dict[str, RateLimit] = {
    "brevo": RateLimit(requests=10, per_s=1.0, source=(
        "Brevo API limits, /contacts family: 36,000 requests per hour, i.e. 10 per second "
        "(developers.brevo.com/docs/api-limits; shared/reference/processor_apis.md)")),
    "sendgrid": RateLimit(requests=100, per_s=60.0, source=(
        "SendGrid recipients data erasure API: 100 requests per minute (tsg_recipients_data_erasure_v3)")),
    "segment": RateLimit(requests=600, per_s=60.0, source=(
        "Segment Public API, create regulation: 600 requests per minute (public-api SDK docs)")),
    "mixpanel": RateLimit(requests=1, per_s=1.0, source=(
        "Mixpanel GDPR API: 1 request per second (docs.mixpanel.com, data deletion)")),
    "intercom": RateLimit(requests=166, per_s=10.0, source=(
        "Intercom: limits counted per 10-second window, e.g. 1,000 per minute = 166 per 10 s "
        "(developers.intercom.com, rate limiting); set rate_limit for a workspace on another plan")),
    "stripe": RateLimit(requests=25, per_s=1.0, source=(
        "Stripe: 100 operations per second in live mode, 25 per endpoint unless noted "
        "(docs.stripe.com/rate-limits; shared/reference/processor_apis.md 2.1)")),
    "auth0": RateLimit(requests=10, per_s=1.0, source=(
        "Auth0 Management API, free plan: 10 requests per second, 50 on paid plans "
        "(auth0.com rate-limit policy; shared/reference/processor_apis.md 2.14)")),
}


class Pacer:
    """One system's shared pace in this process: a sliding window plus the processor's holds."""

    def __init__(self, limit: RateLimit | None, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep, holds: bool = True) -> None:
        self.limit = limit
        self.holds = holds
        self._clock = clock
        self._sleep = sleep
        # One slot per call in the window: [end time], math.inf while the call is in flight.
        self._slots: list[list[float]] = []
        self._held_until = 0.0
        self._lock = threading.Lock()

    def _window_delay_s(self, now: float) -> float:
        """How long our own pace makes the next call wait from `now`; caller holds the lock."""
        if self.limit is None:
            return 0.0
        if len(self._slots) < self.limit.requests:  # fewer slots kept than allowed: no need to prune
            return 0.0
        window_s = self.limit.per_s * (1.0 + SAFETY_MARGIN)
        self._slots = [slot for slot in self._slots if slot[0] + window_s > now]
        if len(self._slots) < self.limit.requests:
            return 0.0
        first_to_leave = min(slot[0] for slot in self._slots)
        return IN_FLIGHT_POLL_S if first_to_leave == math.inf else first_to_leave + window_s - now

    def acquire(self, system: str, max_wait_s: float) -> Slot:
        """Block until a call may go, and take its slot; a longer wait raises for a re-queue.

        A processor's hold is slept here only when it is short (`HOLD_SLEEP_CAP_S`, a
        window's reset): a longer one is the caller's to wait out, through its retry policy.
        """
        while True:
            with self._lock:
                now = self._clock()
                held_s = max(0.0, self._held_until - now)
                delay = max(held_s, self._window_delay_s(now))
                if delay <= 0:
                    slot = [math.inf]
                    if self.limit is not None:
                        self._slots.append(slot)
                    return slot
            if held_s > HOLD_SLEEP_CAP_S or delay > max_wait_s:
                raise RetryableError(system, f"the lane waits {delay:.1f} s for the processor's rate "
                                             "limit; nothing was sent", retry_after_s=delay)
            self._sleep(delay)

    def release(self, slot: Slot) -> None:
        """The call is answered (or failed): its slot leaves the window a window from now.

        Counting from the answer, not the sending, keeps the limit whatever the network's
        jitter: the processor saw the call before we saw its answer.
        """
        with self._lock:
            slot[0] = self._clock()

    def hold(self, wait_s: float) -> None:
        """The processor asked for a pause: every call of this system waits it out."""
        if not self.holds:
            return
        with self._lock:
            self._held_until = max(self._held_until, self._clock() + max(0.0, wait_s))

    def observe(self, headers: Mapping[str, str]) -> None:
        """Hold the lane until the window resets when an answer says nothing remains in it.

        Only for a lane without a declared limit: a paced lane already keeps to the window,
        and the reset headers are coarse (whole seconds), so holding on them would waste
        most of a window; a quota shared with other clients still shows as a 429, which holds.
        """
        if self.limit is not None:
            return
        lowered = {key.lower(): value for key, value in headers.items()}
        remaining = next((lowered[name] for name in REMAINING_HEADERS if name in lowered), None)
        if remaining is None or remaining.strip() != "0":
            return
        reset_wait_s = wait_from_headers(lowered)
        if reset_wait_s is not None:
            self.hold(reset_wait_s)


class PacerRegistry:
    """The process's pacers by system id: configured when the connectors are built."""

    def __init__(self) -> None:
        self._pacers: dict[str, Pacer] = {}
        self._lock = threading.Lock()

    def configure(self, system: str, connector_type: str, override: RateLimit | None = None) -> Pacer:
        """The system's pacer at its declared limit (the override wins over the published one)."""
        limit = override or PUBLISHED_LIMITS.get(connector_type)
        with self._lock:
            pacer = self._pacers.get(system)
            if pacer is None or pacer.limit != limit:
                pacer = self._pacers[system] = Pacer(limit)
            return pacer

    def reset(self) -> None:
        """Forget every pacer (a test's fresh start)."""
        with self._lock:
            self._pacers.clear()

    def for_system(self, system: str) -> Pacer:
        """The system's pacer; a client built outside the register (a one-off call) is not paced."""
        with self._lock:
            return self._pacers.setdefault(system, Pacer(None, holds=False))


PACERS = PacerRegistry()
