"""GA4 User Deletion API specifics beyond the shared conformance tests: the upsert body, the
evidence, the 403 family (rate limit vs permission vs daily quota), 429, and the fake's quotas."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests

from connectors.base import AuthError, Connector, PermanentError, RetryableError, TaskContext
from connectors.http import call_with_retries
from connectors.registry import build_connector, settings_model
from schemas import Identity, SubjectIdentities
from tests.fakes.ga4 import UPSERT, FakeGa4

TOKEN = "ya29.specifics-token"
PROPERTY = "987654321"
USER_ID = "u-0a1b2c3d4e5f"
EMAIL = "ga4.person@example.test"
CONTEXT = TaskContext(request_id="7d5e3c1a-4b2f-4c8d-9e6f-0a1b2c3d4e5f", system="ga4-test", attempt=1)


@pytest.fixture(autouse=True)
def secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_GA4_TOKEN", TOKEN)


def start(**kwargs: Any) -> FakeGa4:
    fake = FakeGa4({TOKEN: {PROPERTY}, "ya29.other-property": {"111"}}, **kwargs)
    fake.start()
    return fake


@pytest.fixture
def fake() -> Iterator[FakeGa4]:
    server = start()
    yield server
    server.stop()


def make(fake: FakeGa4, property_id: str = PROPERTY) -> Connector:
    settings = settings_model("ga4").model_validate(
        {"base_url": fake.url, "secrets": {"token": "T_GA4_TOKEN"}, "params": {"property_id": property_id}})
    return build_connector("ga4-test", "ga4", settings)


def subject(user_id: str = USER_ID) -> SubjectIdentities:
    return SubjectIdentities(identities=[Identity(identity_type="email", identity_value=EMAIL),
                                         Identity(identity_type="user_id", identity_value=user_id)])


def erase(fake: FakeGa4, who: SubjectIdentities | None = None, property_id: str = PROPERTY) -> Any:
    connector = make(fake, property_id)
    try:
        return connector.erase(who or subject(), CONTEXT)
    finally:
        connector.close()


def test_upsert_sends_the_documented_body_and_keeps_deletion_request_time(fake: FakeGa4) -> None:
    fake.collect(PROPERTY, USER_ID)
    result = erase(fake)
    assert fake.bodies == [{"kind": "analytics#userDeletionRequest",
                            "id": {"type": "USER_ID", "userId": USER_ID}, "propertyId": PROPERTY}]
    assert result.status == "erased" and result.evidence.http_status == 200
    stored = fake.deletion_requests[PROPERTY][("USER_ID", USER_ID)]
    assert result.evidence.reference == stored["deletionRequestTime"]
    assert not fake.holds(PROPERTY, USER_ID)


def test_upsert_is_idempotent(fake: FakeGa4) -> None:
    first, again = erase(fake), erase(fake)
    assert first.status == again.status == "erased"
    assert fake.request_count(PROPERTY) == 1, "one deletion request per user and property"


def test_unknown_user_is_still_erased_the_api_cannot_tell(fake: FakeGa4) -> None:
    assert erase(fake, subject("u-never-seen")).status == "erased"


def test_without_a_user_id_nothing_is_sent(fake: FakeGa4) -> None:
    only_email = SubjectIdentities(identities=[Identity(identity_type="email", identity_value=EMAIL)])
    result = erase(fake, only_email)
    assert result.status == "not_found" and result.evidence.records_affected == 0 and fake.bodies == []


def test_403_user_rate_limit_is_retryable(fake: FakeGa4) -> None:
    fake.collect(PROPERTY, USER_ID)
    requests.post(f"{fake.url}/__fake__/faults", json={"status": 403}, timeout=5).raise_for_status()
    with pytest.raises(RetryableError) as info:
        erase(fake)
    assert info.value.http_status == 403 and USER_ID not in str(info.value)
    assert fake.holds(PROPERTY, USER_ID)


def test_403_insufficient_permissions_is_auth_naming_the_variable(fake: FakeGa4) -> None:
    with pytest.raises(AuthError) as info:
        erase(fake, property_id="111")  # a property our token was not granted
    assert "T_GA4_TOKEN" in str(info.value) and "ga4-test" in str(info.value)
    assert USER_ID not in str(info.value)


def test_401_invalid_credentials_is_auth(fake: FakeGa4, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_GA4_TOKEN", "ya29.expired")
    with pytest.raises(AuthError, match="T_GA4_TOKEN"):
        erase(fake)


@pytest.mark.parametrize("status", [403, 429])
def test_qps_exhaustion_answers_as_configured_and_is_retryable(status: Any) -> None:
    fake = start(qps_per_property=0.1, rate_limit_status=status)  # one query per 10 s window
    try:
        assert erase(fake).status == "erased"
        with pytest.raises(RetryableError) as info:
            erase(fake)
    finally:
        fake.stop()
    assert info.value.http_status == status


def test_daily_quota_gives_403_daily_limit_exceeded_until_the_next_day() -> None:
    fake = start(daily_per_property=2)
    try:
        assert erase(fake).status == "erased" and erase(fake, subject("u-2")).status == "erased"
        response = requests.post(f"{fake.url}{UPSERT}", headers={"authorization": f"Bearer {TOKEN}"}, json={
            "kind": "analytics#userDeletionRequest", "id": {"type": "USER_ID", "userId": "u-3"},
            "propertyId": PROPERTY}, timeout=5)
        assert response.status_code == 403
        assert response.json()["error"]["errors"][0] == {
            "domain": "usageLimits", "reason": "dailyLimitExceeded", "message": "Daily Limit Exceeded"}
        with pytest.raises(RetryableError):
            erase(fake, subject("u-3"))
        fake.new_day()
        assert erase(fake, subject("u-3")).status == "erased"
    finally:
        fake.stop()


def test_project_daily_quota_spans_properties() -> None:
    fake = FakeGa4({TOKEN: {PROPERTY, "222"}}, daily_per_project=1)
    fake.start()
    try:
        assert erase(fake).status == "erased"
        with pytest.raises(RetryableError):
            erase(fake, property_id="222")
    finally:
        fake.stop()


def daily_limited(shape: str = "dailyLimitExceeded") -> RetryableError:
    fake = start(daily_per_property=0, daily_limit_shape=shape)
    try:
        with pytest.raises(RetryableError) as info:
            erase(fake)
    finally:
        fake.stop()
    return info.value


def test_daily_limit_exceeded_is_not_retried_today() -> None:
    error = daily_limited()
    assert error.retry_after_s is not None and 0 < error.retry_after_s <= 86400
    slept: list[float] = []
    fake = start(daily_per_property=0)
    connector = make(fake)
    try:
        with pytest.raises(RetryableError):
            call_with_retries(lambda: connector.erase(subject(), CONTEXT), attempts=3, max_wait_s=5,
                              backoff_cap_s=0.01, sleep=slept.append)
    finally:
        connector.close()
        fake.stop()
    assert slept == [] and fake.bodies == [fake.bodies[0]], "one call, then left to the runtime's not_before"


@pytest.mark.parametrize(("shape", "status"), [
    ("dailyLimitExceeded", 403), ("quotaExceeded", 403), ("RESOURCE_EXHAUSTED", 429)])
def test_daily_limit_exceeded_waits_until_midnight_pacific(shape: str, status: int) -> None:
    """Whatever shape Google gives a spent daily quota (the v3 reason, 403 quotaExceeded per day,
    429 RESOURCE_EXHAUSTED per day), the task waits for Google's day to end, never an auth error."""
    now = datetime.now(ZoneInfo("America/Los_Angeles"))
    midnight = datetime.combine(now.date() + timedelta(days=1), time(0), now.tzinfo)
    error = daily_limited(shape)
    assert error.http_status == status and error.retry_after_s is not None
    assert abs(error.retry_after_s - (midnight - now).total_seconds()) < 120


def test_invalid_resource_is_400_permanent(fake: FakeGa4) -> None:
    response = requests.post(f"{fake.url}{UPSERT}", headers={"authorization": f"Bearer {TOKEN}"},
                             json={"kind": "analytics#userDeletionRequest",
                                   "id": {"type": "EMAIL", "userId": "x"},
                                   "propertyId": PROPERTY}, timeout=5)
    assert response.status_code == 400 and response.json()["error"]["errors"][0]["reason"] == "invalid"


def test_server_errors_are_retryable_and_permanent_ones_are_not(fake: FakeGa4) -> None:
    requests.post(f"{fake.url}/__fake__/faults", json={"status": 503}, timeout=5).raise_for_status()
    with pytest.raises(RetryableError):
        erase(fake)
    requests.post(f"{fake.url}/__fake__/faults", json={"status": 400}, timeout=5).raise_for_status()
    with pytest.raises(PermanentError):
        erase(fake)


def test_settings_need_the_property_id(fake: FakeGa4) -> None:
    with pytest.raises(ValueError, match="property_id"):
        settings_model("ga4").model_validate({"base_url": fake.url, "secrets": {"token": "T_GA4_TOKEN"}})
