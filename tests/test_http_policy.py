"""The one retry policy: what is retryable and how long to wait."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from datetime import time as dt_time
from email.utils import format_datetime
from zoneinfo import ZoneInfo

import pytest
import requests

from connectors.base import AuthError, PermanentError, RetryableError
from connectors.http import Quirks, call_with_retries, classify_response, wait_from_headers

NOW = 1_800_000_000.0


def response(status: int, headers: dict[str, str] | None = None, body: str = "") -> requests.Response:
    resp = requests.Response()
    resp.status_code = status
    resp.headers.update(headers or {})
    resp._content = body.encode()
    return resp


@pytest.mark.parametrize(("headers", "wait"), [
    ({"Retry-After": "7"}, 7.0),
    ({"Retry-After": format_datetime(datetime.fromtimestamp(NOW + 30, UTC), usegmt=True)}, 30.0),
    ({"x-sib-ratelimit-reset": "12"}, 12.0),
    ({"X-RateLimit-Reset": str(int(NOW + 45))}, 45.0),
    ({"X-RateLimit-Reset": format_datetime(datetime.fromtimestamp(NOW + 20, UTC))}, 20.0),
    ({"Retry-After": "3", "X-RateLimit-Reset": str(int(NOW + 45))}, 3.0),
    ({}, None),
])
def test_wait_from_headers(headers: dict[str, str], wait: float | None) -> None:
    assert wait_from_headers(headers, now_epoch_s=NOW) == wait


@pytest.mark.parametrize(("status", "headers", "body", "error"), [
    (429, {"x-sib-ratelimit-reset": "5"}, "", RetryableError),
    (420, {}, "", RetryableError),
    (503, {}, "", RetryableError),
    (403, {}, '{"error":{"errors":[{"reason":"userRateLimitExceeded"}]}}', RetryableError),
    (403, {}, '{"error":{"errors":[{"reason":"insufficientPermissions"}]}}', AuthError),
    (401, {}, "", AuthError),
    (429, {"Stripe-Should-Retry": "false"}, "", PermanentError),
    (400, {}, "", PermanentError),
])
def test_classification(status: int, headers: dict[str, str], body: str, error: type) -> None:
    with pytest.raises(error) as info:
        classify_response(response(status, headers, body), "acme", "DELETE /x/{id}", "ACME_KEY")
    assert type(info.value) is error
    assert info.value.system == "acme"


def test_auth_error_names_the_variable() -> None:
    with pytest.raises(AuthError, match="ACME_KEY"):
        classify_response(response(401), "acme", "DELETE /x/{id}", "ACME_KEY")


def test_retries_honour_the_processors_wait() -> None:
    waits: list[float] = []
    calls = iter([RetryableError("acme", "429", retry_after_s=2.0), RetryableError("acme", "503"), "ok"])

    def operation() -> str:
        item = next(calls)
        if isinstance(item, Exception):
            raise item
        return item

    assert call_with_retries(operation, attempts=3, max_wait_s=5, backoff_cap_s=4,
                             sleep=waits.append) == "ok"
    assert waits[0] == 2.0 and 0 <= waits[1] <= 4


def test_long_waits_are_not_slept_in_process() -> None:
    waits: list[float] = []

    def operation() -> str:
        raise RetryableError("acme", "429", retry_after_s=120.0)

    with pytest.raises(RetryableError):
        call_with_retries(operation, attempts=5, max_wait_s=5, backoff_cap_s=4, sleep=waits.append)
    assert waits == []


def test_permanent_errors_are_not_retried() -> None:
    calls = []

    def operation() -> str:
        calls.append(1)
        raise PermanentError("acme", "HTTP 400")

    with pytest.raises(PermanentError):
        call_with_retries(operation, attempts=5, max_wait_s=5, backoff_cap_s=4, sleep=lambda _: None)
    assert len(calls) == 1


@pytest.mark.parametrize("body", [
    '{"error":{"errors":[{"domain":"usageLimits","reason":"dailyLimitExceeded"}],"code":403}}',
    '{"status":"error","errorType":"RATE_LIMIT","policyName":"DAILY"}',
])
def test_a_spent_daily_quota_waits_until_the_day_ends(body: str) -> None:
    status = 403 if "usageLimits" in body else 429
    with pytest.raises(RetryableError) as info:
        classify_response(response(status, {}, body), "acme", "POST /x")
    wait = info.value.retry_after_s
    assert wait is not None and 0 < wait <= 86400 + 3600
    zone = ZoneInfo("America/Los_Angeles" if "usageLimits" in body else "UTC")
    now = datetime.now(zone)
    midnight = datetime.combine(now.date() + timedelta(days=1), dt_time(0), zone)
    assert abs(wait - (midnight - now).total_seconds()) < 120


def test_a_secondly_limit_is_not_a_daily_one() -> None:
    with pytest.raises(RetryableError) as info:
        classify_response(response(429, {}, '{"errorType":"RATE_LIMIT","policyName":"SECONDLY"}'), "a", "P")
    assert info.value.retry_after_s is None


GOOGLE_PER_DAY = "Quota exceeded for quota metric 'Queries' and limit 'Queries per day' of service 'x'"
GOOGLE_PER_MINUTE = "Quota exceeded for quota metric 'Queries' and limit 'Queries per minute' of service 'x'"


def google(code: int, status: str, reason: str, message: str, quota_limit: str | None = None) -> str:
    error: dict[str, object] = {"code": code, "status": status, "message": message,
                                "errors": [{"domain": "usageLimits", "reason": reason, "message": message}]}
    if quota_limit:
        error["details"] = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason,
                             "metadata": {"quota_limit": quota_limit}}]
    return json.dumps({"error": error})


def until_midnight(zone: str) -> float:
    now = datetime.now(ZoneInfo(zone))
    return (datetime.combine(now.date() + timedelta(days=1), dt_time(0), now.tzinfo) - now).total_seconds()


@pytest.mark.parametrize(("status", "body"), [
    (429, google(429, "RESOURCE_EXHAUSTED", "RATE_LIMIT_EXCEEDED", GOOGLE_PER_DAY,
                 "DefaultRequestsPerDayPerProject")),
    (429, google(429, "RESOURCE_EXHAUSTED", "rateLimitExceeded", GOOGLE_PER_DAY)),
    (403, google(403, "PERMISSION_DENIED", "quotaExceeded", GOOGLE_PER_DAY)),
])
def test_a_google_daily_quota_waits_until_midnight_pacific(status: int, body: str) -> None:
    with pytest.raises(RetryableError) as info:
        classify_response(response(status, {}, body), "ga", "POST /x", "GA_TOKEN")
    assert type(info.value) is RetryableError and info.value.http_status == status
    wait = info.value.retry_after_s
    assert wait is not None and abs(wait - until_midnight("America/Los_Angeles")) < 120


@pytest.mark.parametrize(("status", "body"), [
    (429, google(429, "RESOURCE_EXHAUSTED", "RATE_LIMIT_EXCEEDED", GOOGLE_PER_MINUTE,
                 "DefaultRequestsPerMinutePerUser")),
    (403, google(403, "PERMISSION_DENIED", "quotaExceeded", GOOGLE_PER_MINUTE)),
    (403, google(403, "PERMISSION_DENIED", "rateLimitExceeded", "Rate Limit Exceeded")),
])
def test_a_google_per_minute_quota_backs_off(status: int, body: str) -> None:
    with pytest.raises(RetryableError) as info:
        classify_response(response(status, {}, body), "ga", "POST /x", "GA_TOKEN")
    assert type(info.value) is RetryableError and info.value.retry_after_s is None


@pytest.mark.parametrize("body", [
    google(403, "PERMISSION_DENIED", "insufficientPermissions", "The caller does not have permission"),
    google(403, "PERMISSION_DENIED", "forbidden", "Forbidden"),
    '{"error":{"code":403,"status":"PERMISSION_DENIED","message":"Analytics Admin API has not been used"}}',
])
def test_a_google_permission_error_stays_an_auth_error(body: str) -> None:
    with pytest.raises(AuthError, match="GA_TOKEN"):
        classify_response(response(403, {}, body), "ga", "POST /x", "GA_TOKEN")


@pytest.mark.parametrize(("quirks", "status", "error"), [
    (Quirks(bare_403_is_throttle=True), 403, RetryableError),
    (Quirks(), 403, AuthError),
    (Quirks(bare_403_is_throttle=True), 401, AuthError),
])
def test_a_bare_403_is_throttling_only_where_the_processor_says_so(
        quirks: Quirks, status: int, error: type) -> None:
    with pytest.raises(error):
        classify_response(response(status, {"content-type": "text/html"}, ""), "m", "GET /x", "K", quirks)
    problem = '{"type":"t","title":"User Disabled","status":403,"detail":"d","instance":"i"}'
    with pytest.raises(AuthError):
        classify_response(response(403, {}, problem), "m", "GET /x", "K", quirks)


def test_a_daily_limit_without_a_zone_of_its_own_resets_in_the_processors_zone() -> None:
    body = '{"status":"error","errorType":"RATE_LIMIT","policyName":"DAILY"}'
    with pytest.raises(RetryableError) as info:
        classify_response(response(429, {}, body), "hs", "POST /x", quirks=Quirks(quota_zone="Asia/Tokyo"))
    wait = info.value.retry_after_s
    assert wait is not None and abs(wait - until_midnight("Asia/Tokyo")) < 120
