"""GA4 User Deletion API specifics beyond the shared conformance tests: service-account tokens
(minted, refreshed when expired), the upsert body and its id types, the evidence, the 403 family
(rate limit vs permission vs daily quota), 429, and the fake's quotas."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests

from connectors.base import AuthError, Connector, PermanentError, RetryableError, TaskContext
from connectors.http import call_with_retries
from connectors.pacing import PACERS
from connectors.registry import build_connector, settings_model
from schemas import Identity, SubjectIdentities
from tests.fakes.ga4 import UPSERT, FakeGa4, service_account_key

TOKEN = "ya29.specifics-token"  # a token handed out directly, for raw requests to the fake
ACCOUNT = "erasure@specifics.iam.gserviceaccount.com"
OTHER = "other@specifics.iam.gserviceaccount.com"
KEYS = Path(tempfile.mkdtemp(prefix="ga4-specifics-"))
KEY_FILE, PUBLIC_KEY = service_account_key(KEYS, ACCOUNT, "https://oauth2.googleapis.com/token")
OTHER_KEY_FILE, OTHER_PUBLIC_KEY = service_account_key(KEYS, OTHER, "https://oauth2.googleapis.com/token")
PROPERTY = "987654321"
USER_ID = "u-0a1b2c3d4e5f"
EMAIL = "ga4.person@example.test"
CONTEXT = TaskContext(request_id="7d5e3c1a-4b2f-4c8d-9e6f-0a1b2c3d4e5f", system="ga4-test", attempt=1)


@pytest.fixture(autouse=True)
def secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_GA4_KEY_FILE", str(KEY_FILE))


def start(**kwargs: Any) -> FakeGa4:
    fake = FakeGa4({TOKEN: {PROPERTY}}, service_accounts={
        ACCOUNT: (PUBLIC_KEY, {PROPERTY}), OTHER: (OTHER_PUBLIC_KEY, {"111"})}, **kwargs)
    fake.start()
    return fake


@pytest.fixture
def fake() -> Iterator[FakeGa4]:
    server = start()
    yield server
    server.stop()


def make(fake: FakeGa4, property_id: str = PROPERTY, **overrides: Any) -> Connector:
    settings = settings_model("ga4").model_validate(
        {"base_url": fake.url, "token_uri": fake.token_url, "key_file_env": "T_GA4_KEY_FILE",
         "property_id": property_id, **overrides})
    return build_connector("ga4-test", "ga4", settings)


def subject(user_id: str = USER_ID) -> SubjectIdentities:
    return SubjectIdentities(identities=[Identity(identity_type="email", identity_value=EMAIL),
                                         Identity(identity_type="user_id", identity_value=user_id)])


def erase(fake: FakeGa4, who: SubjectIdentities | None = None, property_id: str = PROPERTY,
          **overrides: Any) -> Any:
    connector = make(fake, property_id, **overrides)
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
    assert "T_GA4_KEY_FILE" in str(info.value) and "ga4-test" in str(info.value)
    assert USER_ID not in str(info.value)


def test_a_key_the_token_endpoint_does_not_know_is_auth(fake: FakeGa4,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    stranger, _ = service_account_key(KEYS, "stranger@elsewhere.iam.gserviceaccount.com",
                                      "https://oauth2.googleapis.com/token")
    monkeypatch.setenv("T_GA4_KEY_FILE", str(stranger))
    fake.collect(PROPERTY, USER_ID)
    with pytest.raises(AuthError, match="T_GA4_KEY_FILE"):
        erase(fake)
    assert fake.grants == 0 and fake.bodies == [] and fake.holds(PROPERTY, USER_ID)


def test_token_is_minted_from_the_service_account_not_read_from_the_environment(fake: FakeGa4) -> None:
    fake.collect(PROPERTY, USER_ID)
    assert erase(fake).status == "erased" and not fake.holds(PROPERTY, USER_ID)
    assert fake.grants == 1, "one JWT bearer grant, verified against the account's public key"


def test_an_expired_token_is_refreshed_and_the_call_succeeds(fake: FakeGa4) -> None:
    connector = make(fake)
    try:
        assert connector.erase(subject(), CONTEXT).status == "erased"
        fake.advance(3601)  # an hour later: Google refuses the first token with 401
        fake.collect(PROPERTY, "u-later")
        assert connector.erase(subject("u-later"), CONTEXT).status == "erased"
    finally:
        connector.close()
    assert fake.refused_expired == 1 and fake.grants == 2
    assert not fake.holds(PROPERTY, "u-later")


def test_a_token_about_to_expire_is_refreshed_before_the_call() -> None:
    fake = start(token_lifetime_s=60)  # inside google-auth's refresh margin
    connector = make(fake)
    try:
        for user_id in ("u-1", "u-2", "u-3"):
            assert connector.erase(subject(user_id), CONTEXT).status == "erased"
    finally:
        connector.close()
        fake.stop()
    assert fake.refused_expired == 0 and fake.grants == 3, "no call was sent with a stale token"


def test_client_id_and_app_instance_id_are_sent_as_the_discovery_document_names_them(fake: FakeGa4) -> None:
    """`id.type` is CLIENT_ID, USER_ID or APP_INSTANCE_ID; the request's identity types map to them."""
    fake.collect(PROPERTY, USER_ID)
    fake.collect(PROPERTY, "1234567890.1700000000", "CLIENT_ID")
    fake.collect(PROPERTY, "f1e2d3c4b5a6", "APP_INSTANCE_ID")
    who = SubjectIdentities(identities=[
        Identity(identity_type="user_id", identity_value=USER_ID),
        Identity(identity_type="account_id", identity_value="1234567890.1700000000"),
        Identity(identity_type="customer_id", identity_value="f1e2d3c4b5a6")])
    result = erase(fake, who, identities={"user_id": "USER_ID", "account_id": "CLIENT_ID",
                                          "customer_id": "APP_INSTANCE_ID"})
    assert result.status == "erased" and result.evidence.records_affected == 3
    assert [body["id"]["type"] for body in fake.bodies] == ["USER_ID", "CLIENT_ID", "APP_INSTANCE_ID"]
    assert not fake.holds(PROPERTY, "1234567890.1700000000", "CLIENT_ID")
    assert not fake.holds(PROPERTY, "f1e2d3c4b5a6", "APP_INSTANCE_ID")


def test_an_unknown_ga4_id_type_is_a_settings_error(fake: FakeGa4) -> None:
    with pytest.raises(ValueError, match="identities"):
        make(fake, identities={"account_id": "EMAIL"})


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
        PACERS.reset()  # the lane's hold ends at Pacific midnight: the fake's new day stands for it
        assert erase(fake, subject("u-3")).status == "erased"
    finally:
        fake.stop()


def test_project_daily_quota_spans_properties() -> None:
    fake = FakeGa4(service_accounts={ACCOUNT: (PUBLIC_KEY, {PROPERTY, "222"})}, daily_per_project=1)
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
    PACERS.reset()  # that quota was another fake's: this one's first call must be sent
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
        settings_model("ga4").model_validate({"base_url": fake.url, "key_file_env": "T_GA4_KEY_FILE"})
