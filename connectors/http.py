"""HTTP helper for processor connectors: the one place that classifies responses and waits.

What is retryable: timeouts and connection errors (raised by
`connectors.client.ProcessorClient`), 408, 5xx, 429, 420 (Crisp's "Enhance Your
Calm"), a 403 whose Google error envelope names a quota (reason
`userRateLimitExceeded`, `rateLimitExceeded`, `dailyLimitExceeded`, `quotaExceeded`,
or status `RESOURCE_EXHAUSTED`), and, for processors whose `Quirks` say so
(Mailchimp), a 403 without a JSON body. How long to wait: Retry-After (seconds or
HTTP date), then the processor's reset header (epoch, relative seconds or HTTP
date), then a spent daily quota (until midnight where the quota's day ends), then
`connectors.retry.RetryPolicy`'s backoff. Never retried: `Stripe-Should-Retry:
false`, auth failures (401, other 403), other 4xx.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from datetime import time as dt_time
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import requests
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from connectors.base import AuthError, PermanentError, RetryableError
from connectors.retry import RetryPolicy

T = TypeVar("T")

RESET_HEADERS = (
    "x-sib-ratelimit-reset",
    "x-ratelimit-reset",
    "ratelimit-reset",
    "x-rate-limit-reset",
)
# Google's error envelope: `error.errors[].reason` (v3 APIs), `error.status` and
# `error.details[].reason` with `metadata.quota_limit` (newer APIs) name a quota.
GOOGLE_QUOTA_REASONS = frozenset({"userRateLimitExceeded", "rateLimitExceeded", "dailyLimitExceeded",
                                  "quotaExceeded", "RATE_LIMIT_EXCEEDED", "RESOURCE_EXHAUSTED"})
# Google's daily quotas reset at midnight Pacific Time.
GOOGLE_QUOTA_ZONE = "America/Los_Angeles"
EPOCH_THRESHOLD_S = 1_000_000_000


@dataclass(frozen=True)
class Quirks:
    """What one processor's answers mean beyond the common rules (the classifier's hook).

    `quota_zone`: where the processor's own daily quota resets (HubSpot: the account's
    time zone). `bare_403_is_throttle`: a 403 without a JSON body is throttling, not an
    auth failure (Mailchimp under very high load; its auth failures carry a problem body).
    """

    quota_zone: str = "UTC"
    bare_403_is_throttle: bool = False


DEFAULT_QUIRKS = Quirks()


def _parse_wait(value: str, now_epoch_s: float, relative_small_numbers: bool) -> float | None:
    value = value.strip()
    try:
        number = float(value)
    except ValueError:
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return max(0.0, moment.timestamp() - now_epoch_s)
    if number >= EPOCH_THRESHOLD_S:
        return max(0.0, number - now_epoch_s)
    return max(0.0, number) if relative_small_numbers else None


def wait_from_headers(headers: requests.structures.CaseInsensitiveDict[str] | dict[str, str],
                      now_epoch_s: float | None = None) -> float | None:
    """Seconds the processor asked us to wait, or None when it gave no hint."""
    now = time.time() if now_epoch_s is None else now_epoch_s
    lowered = {k.lower(): v for k, v in headers.items()}
    if "retry-after" in lowered:
        wait = _parse_wait(lowered["retry-after"], now, relative_small_numbers=True)
        if wait is not None:
            return wait
    for name in RESET_HEADERS:
        if name in lowered:
            wait = _parse_wait(lowered[name], now, relative_small_numbers=True)
            if wait is not None:
                return wait
    return None


def until_next_midnight_s(now_epoch_s: float, zone: str) -> float:
    now = datetime.fromtimestamp(now_epoch_s, ZoneInfo(zone))
    midnight = datetime.combine(now.date() + timedelta(days=1), dt_time(0), now.tzinfo)
    return (midnight - now).total_seconds()


def _json_body(response: requests.Response) -> Any:
    try:
        return json.loads(response.content[:100_000]) if response.content else None
    except ValueError:
        return None


def google_quota(body: Any) -> str | None:
    """"daily" or "short" when a Google error envelope names a spent quota, else None."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return None
    items = [e for key in ("errors", "details") if isinstance(error.get(key), list)
             for e in error[key] if isinstance(e, dict)]
    reasons = {str(e.get("reason")) for e in items} | {str(error.get("status"))}
    if not reasons & GOOGLE_QUOTA_REASONS:
        return None
    limits = [str(v) for e in items if isinstance(e.get("metadata"), dict) for v in e["metadata"].values()]
    text = " ".join([*limits, str(error.get("message", ""))]).lower().replace(" ", "").replace("_", "")
    return "daily" if "dailyLimitExceeded" in reasons or "perday" in text else "short"


def daily_quota_zone(response: requests.Response, quirks: Quirks = DEFAULT_QUIRKS) -> str | None:
    """The zone whose midnight ends a spent daily quota this answer reports, else None."""
    body = _json_body(response)
    if isinstance(body, dict) and body.get("policyName") == "DAILY":  # HubSpot
        return quirks.quota_zone
    return GOOGLE_QUOTA_ZONE if google_quota(body) == "daily" else None


def announced_wait_s(response: requests.Response, now_epoch_s: float | None = None,
                     quirks: Quirks = DEFAULT_QUIRKS) -> float | None:
    """The wait a failed response announces: its headers, else a spent daily quota in its body."""
    now = time.time() if now_epoch_s is None else now_epoch_s
    wait = wait_from_headers(response.headers, now)
    if wait is None:
        zone = daily_quota_zone(response, quirks)
        if zone is not None:
            wait = until_next_midnight_s(now, zone)
    return wait


def _is_throttle_403(response: requests.Response, quirks: Quirks) -> bool:
    if response.status_code != 403:
        return False
    body = _json_body(response)
    if quirks.bare_403_is_throttle and not isinstance(body, dict):
        return True
    return google_quota(body) is not None


def classify_response(
    response: requests.Response, system: str, route: str, secret_env: str | None = None,
    quirks: Quirks = DEFAULT_QUIRKS,
) -> None:
    """Raise the taxonomy's error for a failed response; return for 2xx.

    `route` is the endpoint template (never the URL: it may hold an e-mail).
    """
    status = response.status_code
    what = f"HTTP {status} from {route}"
    if 200 <= status < 300:
        return
    if response.headers.get("Stripe-Should-Retry", "").lower() == "false":
        raise PermanentError(system, f"{what}; the processor says not to retry")
    if status in (429, 420) or status == 408 or status >= 500 or _is_throttle_403(response, quirks):
        raise RetryableError(system, what, retry_after_s=announced_wait_s(response, quirks=quirks),
                             http_status=status)
    if status in (401, 403):
        hint = f"; check the credential in {secret_env}" if secret_env else ""
        raise AuthError(system, f"{what}: the processor rejected our credentials{hint}")
    raise PermanentError(system, what)


def json_answer(response: requests.Response, system: str, route: str) -> Any:
    """The JSON of an answer; one that is not JSON is a permanent error naming the route."""
    try:
        return response.json()
    except ValueError:
        raise PermanentError(system, f"unreadable JSON (HTTP {response.status_code}) from {route}") from None


def json_object(response: requests.Response, system: str, route: str) -> dict[str, Any]:
    document = json_answer(response, system, route)
    if not isinstance(document, dict):
        raise PermanentError(system, f"answer from {route} is not a JSON object")
    return document


def call_with_retries(
    operation: Callable[[], T], attempts: int | None = None, max_wait_s: float | None = None,
    backoff_cap_s: float | None = None, sleep: Callable[[float], None] = time.sleep,
    *, policy: RetryPolicy | None = None,
) -> T:
    """Retry transient errors in process while the wait is short.

    The waits are `policy`'s (the announced wait wins over our backoff); without a policy,
    `attempts` and `backoff_cap_s` make one. A wait longer than `max_wait_s` is not slept
    here: the error propagates and the runtime re-queues the task with `not_before`, so no
    worker thread idles for minutes.
    """
    if max_wait_s is None:
        raise TypeError("call_with_retries needs max_wait_s")
    if policy is None:
        if attempts is None or backoff_cap_s is None:
            raise TypeError("call_with_retries needs a policy, or attempts and backoff_cap_s")
        policy = RetryPolicy(max_attempts=attempts, cap_s=backoff_cap_s)
    # The first attempt runs bare: almost every call succeeds at once, and building a
    # `Retrying` (with its closures and state) for each of them cost more than the call's own
    # bookkeeping. Tenacity takes over only once an attempt failed transiently.
    try:
        return operation()
    except RetryableError as exc:
        if policy.max_attempts <= 1 or not _retry_in_process(exc, max_wait_s):
            raise
        sleep(min(policy.wait_s(1, exc.retry_after_s), max_wait_s))
    return _retrying(policy, max_wait_s, sleep)(operation)


def _retry_in_process(exc: BaseException, max_wait_s: float) -> bool:
    """A transient error whose announced wait (if any) is short enough to sleep here."""
    return isinstance(exc, RetryableError) and (exc.retry_after_s is None or exc.retry_after_s <= max_wait_s)


def _retrying(policy: RetryPolicy, max_wait_s: float, sleep: Callable[[float], None]) -> Retrying:
    """The attempts after the first failed one: attempt n of tenacity's is the call's n+1."""
    def announced(state: RetryCallState) -> float | None:
        exc = state.outcome.exception() if state.outcome else None
        return exc.retry_after_s if isinstance(exc, RetryableError) else None

    return Retrying(
        retry=retry_if_exception(lambda exc: _retry_in_process(exc, max_wait_s)),
        stop=stop_after_attempt(policy.max_attempts - 1),
        wait=lambda state: min(policy.wait_s(state.attempt_number + 1, announced(state)), max_wait_s),
        sleep=sleep,
        reraise=True,
    )
