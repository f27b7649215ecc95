"""The Brevo connector against a fake Brevo that is a real HTTP server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from connectors.base import AuthError, ConfigError, RetryableError, TaskContext
from connectors.http import call_with_retries
from connectors.processors.brevo import BrevoConnector, BrevoSettings
from pipeline.devstack.fake_brevo import FakeBrevo
from schemas import Identity, SubjectIdentities

KEY = "xkeysib-test-123"
EMAIL = "lea.tester@example.net"
CONTEXT = TaskContext(request_id="7d5e3c1a-4b2f-4c8d-9e6f-0a1b2c3d4e5f", system="brevo", attempt=1)


def person(email: str = EMAIL) -> SubjectIdentities:
    return SubjectIdentities(identities=[Identity(identity_type="email", identity_value=email)])


@pytest.fixture
def fake() -> Iterator[FakeBrevo]:
    server = FakeBrevo({KEY})
    server.start()
    requests.post(f"{server.url}/v3/contacts", headers={"api-key": KEY}, json={"email": EMAIL},
                  timeout=5).raise_for_status()
    yield server
    server.stop()


@pytest.fixture
def connector(fake: FakeBrevo, monkeypatch: pytest.MonkeyPatch) -> Iterator[BrevoConnector]:
    monkeypatch.setenv("TEST_BREVO_KEY", KEY)
    instance = BrevoConnector("brevo", BrevoSettings(base_url=fake.url, api_key_env="TEST_BREVO_KEY"))
    yield instance
    instance.close()


def test_erased_then_not_found(fake: FakeBrevo, connector: BrevoConnector) -> None:
    first = connector.erase(person(EMAIL.upper()), CONTEXT)
    assert first.status == "erased" and first.evidence and first.evidence.http_status == 204
    assert first.evidence.assurance == "confirmed" and not first.evidence.residual
    assert not fake.has_contact(EMAIL)
    assert connector.erase(person(), CONTEXT).status == "not_found"


def test_other_contacts_untouched(fake: FakeBrevo, connector: BrevoConnector) -> None:
    requests.post(f"{fake.url}/v3/contacts", headers={"api-key": KEY}, json={"email": "x@example.net"},
                  timeout=5).raise_for_status()
    connector.erase(person(), CONTEXT)
    assert fake.has_contact("x@example.net") and fake.contact_count() == 1


def test_rate_limited_then_erased_honouring_the_reset_header(fake: FakeBrevo,
                                                             connector: BrevoConnector) -> None:
    requests.post(f"{fake.url}/__fake__/faults", json={"status": 429, "count": 1, "reset_s": 2},
                  timeout=5)
    waits: list[float] = []
    result = call_with_retries(lambda: connector.erase(person(), CONTEXT), attempts=3, max_wait_s=5,
                               backoff_cap_s=5, sleep=waits.append)
    assert result.status == "erased"
    assert waits == [2.0]


def test_real_bucket_exhaustion_gives_429_with_brevo_headers() -> None:
    server = FakeBrevo({KEY}, limit_per_window=1, window_s=30)
    server.start()
    try:
        requests.get(f"{server.url}/v3/contacts/1", headers={"api-key": KEY}, timeout=5)
        second = requests.get(f"{server.url}/v3/contacts/1", headers={"api-key": KEY}, timeout=5)
        assert second.status_code == 429
        assert "retry-after" not in {k.lower() for k in second.headers}
        assert int(second.headers["x-sib-ratelimit-reset"]) > 0
        assert second.headers["x-sib-ratelimit-remaining"] == "0"
    finally:
        server.stop()


def test_server_error_then_erased(fake: FakeBrevo, connector: BrevoConnector) -> None:
    requests.post(f"{fake.url}/__fake__/faults", json={"status": 500, "count": 2}, timeout=5)
    result = call_with_retries(lambda: connector.erase(person(), CONTEXT), attempts=3, max_wait_s=0.01,
                               backoff_cap_s=0.01, sleep=lambda _: None)
    assert result.status == "erased"


def test_server_error_persisting_is_retryable_and_names_no_one(fake: FakeBrevo,
                                                               connector: BrevoConnector) -> None:
    requests.post(f"{fake.url}/__fake__/faults", json={"status": 503, "count": 5}, timeout=5)
    with pytest.raises(RetryableError) as info:
        connector.erase(person(), CONTEXT)
    assert EMAIL not in str(info.value) and "lea" not in str(info.value)


def test_bad_credentials_fail_naming_system_and_variable(fake: FakeBrevo,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_BREVO_KEY", "wrong")
    instance = BrevoConnector("brevo", BrevoSettings(base_url=fake.url, api_key_env="TEST_BREVO_KEY"))
    with pytest.raises(AuthError) as info:
        instance.erase(person(), CONTEXT)
    assert "brevo" in str(info.value) and "TEST_BREVO_KEY" in str(info.value)
    assert fake.has_contact(EMAIL)


def test_missing_secret_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOPE_BREVO_KEY", raising=False)
    with pytest.raises(ConfigError, match="NOPE_BREVO_KEY"):
        BrevoConnector("brevo", BrevoSettings(api_key_env="NOPE_BREVO_KEY"))


def test_unreachable_processor_is_retryable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_BREVO_KEY", KEY)
    instance = BrevoConnector("brevo", BrevoSettings(base_url="http://127.0.0.1:9",
                                                     api_key_env="TEST_BREVO_KEY", timeout_s=1))
    with pytest.raises(RetryableError) as info:
        instance.erase(person(), CONTEXT)
    assert EMAIL not in str(info.value)
