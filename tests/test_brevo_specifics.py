"""Brevo specifics: 405 for the account's own registered address is a clear permanent refusal."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from connectors.base import PermanentError, TaskContext
from connectors.http import call_with_retries
from connectors.processors.brevo import BrevoConnector, BrevoSettings
from schemas import Identity, SubjectIdentities
from tests.fakes.brevo import ACCOUNT_EMAIL, FakeBrevoAccount

KEY = "xkeysib-specifics"
CONTEXT = TaskContext(request_id="5d5e3c1a-4b2f-4c8d-9e6f-0a1b2c3d4e5f", system="brevo", attempt=1)


@pytest.fixture
def fake() -> Iterator[FakeBrevoAccount]:
    server = FakeBrevoAccount({KEY})
    server.start()
    yield server
    server.stop()


def test_the_accounts_registered_address_is_refused_for_good(fake: FakeBrevoAccount,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_BREVO_KEY", KEY)
    requests.post(f"{fake.url}/v3/contacts", json={"email": ACCOUNT_EMAIL}, headers={"api-key": KEY},
                  timeout=5).raise_for_status()
    connector = BrevoConnector("brevo", BrevoSettings(base_url=fake.url, api_key_env="TEST_BREVO_KEY"))
    calls: list[float] = []
    subject = SubjectIdentities(identities=[Identity(identity_type="email", identity_value=ACCOUNT_EMAIL)])
    try:
        with pytest.raises(PermanentError) as info:
            call_with_retries(lambda: connector.erase(subject, CONTEXT), attempts=3, max_wait_s=5,
                              backoff_cap_s=1, sleep=calls.append)
    finally:
        connector.close()
    message = str(info.value)
    assert "405" in message and "registered with" in message and "change the account's login" in message
    assert ACCOUNT_EMAIL not in message and calls == [], "a refusal is not retried"
    assert fake.has_contact(ACCOUNT_EMAIL)


@pytest.mark.parametrize(("status", "code"), [(400, "bad_request"), (404, "document_not_found"),
                                              (503, "internal_error")])
def test_an_injected_refusal_carries_a_code_of_brevos_error_model(fake: FakeBrevoAccount, status: int,
                                                                  code: str) -> None:
    """A refusal's `code` is one of the errorModel's (the contract checks the 400 and the 404)."""
    requests.post(f"{fake.url}/__fake__/faults", json={"status": status, "count": 1}, timeout=5)
    answer = requests.delete(f"{fake.url}/v3/contacts/someone%40example.net", headers={"api-key": KEY},
                             timeout=5)
    assert answer.status_code == status and answer.json()["code"] == code
