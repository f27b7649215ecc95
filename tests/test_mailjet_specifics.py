"""Mailjet specifics: the declared spec, immediate anonymisation, the 30-day purge, re-upload,
two secrets, a bare 429, and the fake's UNCONFIRMED switches (both settings each)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from connectors.base import AuthError, ConfigError, RetryableError, TaskContext
from connectors.http import call_with_retries
from connectors.processors.declarative import DeclarativeConnector, shipped_specs
from connectors.registry import build_connector, settings_model
from pipeline.devstack.fake_server import Reply
from schemas import Identity, SubjectIdentities
from tests.fakes.mailjet import RETENTION_S, FakeMailjet

PUBLIC = "pub-key-0123456789"
PRIVATE = "priv-key-9876543210"
EMAIL = "lea.tester@example.net"
CONTEXT = TaskContext(request_id="7d5e3c1a-4b2f-4c8d-9e6f-0a1b2c3d4e5f", system="mailjet", attempt=1)
AUTH = (PUBLIC, PRIVATE)


def person(email: str = EMAIL) -> SubjectIdentities:
    return SubjectIdentities(identities=[Identity(identity_type="email", identity_value=email)])


def start(**switches: Any) -> FakeMailjet:
    fake = FakeMailjet({(PUBLIC, PRIVATE)}, **switches)
    fake.start()
    return fake


def build(fake: FakeMailjet, monkeypatch: pytest.MonkeyPatch) -> DeclarativeConnector:
    monkeypatch.setenv("TEST_MJ_PUBLIC", PUBLIC)
    monkeypatch.setenv("TEST_MJ_PRIVATE", PRIVATE)
    settings = settings_model("mailjet").model_validate(
        {"base_url": fake.url, "secrets": {"api_key": "TEST_MJ_PUBLIC", "secret_key": "TEST_MJ_PRIVATE"}})
    instance = build_connector("mailjet", "mailjet", settings)
    assert isinstance(instance, DeclarativeConnector)
    return instance


@pytest.fixture
def fake() -> Iterator[FakeMailjet]:
    server = start()
    yield server
    server.stop()


@pytest.fixture
def connector(fake: FakeMailjet, monkeypatch: pytest.MonkeyPatch) -> Iterator[DeclarativeConnector]:
    instance = build(fake, monkeypatch)
    yield instance
    instance.close()


def test_the_spec_is_shipped_with_two_secrets() -> None:
    spec = shipped_specs()["mailjet"]
    assert spec.auth.scheme == "basic" and spec.secrets == ["api_key", "secret_key"]
    assert spec.lookup is not None and spec.lookup.ids == "Data[*].ID"
    with pytest.raises(ValueError, match="secret_key"):
        settings_model("mailjet").model_validate({"secrets": {"api_key": "X"}})


def test_erase_anonymises_at_once_and_keeps_the_record_30_days(fake: FakeMailjet,
                                                              connector: DeclarativeConnector) -> None:
    contact_id = fake.add_contact(EMAIL, name="Lea Tester")
    result = connector.erase(person(), CONTEXT)
    assert result.status == "erased" and result.evidence is not None
    assert result.evidence.http_status == 200 and result.evidence.reference == str(contact_id)
    # Anonymised now, purged in 30 days: accepted, with Mailjet's own date and the record named until then.
    evidence = result.evidence
    assert evidence.assurance == "accepted" and evidence.completes_by is not None
    in_30_days = datetime.now(UTC) + timedelta(days=30)
    assert abs((evidence.completes_by - in_30_days).total_seconds()) < 60
    assert [(r.what, r.until) for r in evidence.residual] == [
        ("anonymised contact record", evidence.completes_by)]
    record = fake.record(contact_id)
    assert record is not None and record["Name"] == "Anonymized"
    expected = "\\x" + hashlib.sha1(EMAIL.encode()).hexdigest() + "@domain.invalid"
    assert record["Email"] == expected and EMAIL not in str(record)
    assert not fake.has_contact(EMAIL)
    by_id = requests.get(f"{fake.url}/v3/REST/contact/{contact_id}", auth=AUTH, timeout=5)
    assert by_id.status_code == 200 and by_id.json()["Data"][0]["Name"] == "Anonymized"
    fake.advance(RETENTION_S - 60)
    assert fake.record(contact_id) is not None, "kept until the 30 days are over"
    requests.post(f"{fake.url}/__fake__/clock", json={"advance_s": 120}, timeout=5).raise_for_status()
    assert fake.record(contact_id) is None
    gone = requests.get(f"{fake.url}/v3/REST/contact/{contact_id}", auth=AUTH, timeout=5)
    assert gone.status_code == 404


@pytest.mark.parametrize("delete_status", [200, 204])
def test_either_documented_success_of_the_delete_is_an_erasure(delete_status: int,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The GDPR guide answers 200, the errors page says a successful DELETE answers 204."""
    assert shipped_specs()["mailjet"].erase.statuses[delete_status] == "erased"
    fake = start(delete_status=delete_status)
    instance = build(fake, monkeypatch)
    try:
        contact_id = fake.add_contact(EMAIL)
        result = instance.erase(person(), CONTEXT)
        assert result.status == "erased" and result.evidence is not None
        assert result.evidence.http_status == delete_status, "the evidence says which answer Mailjet gave"
        assert result.evidence.reference == str(contact_id) and result.evidence.assurance == "accepted"
        record = fake.record(contact_id)
        assert record is not None and record["Name"] == "Anonymized" and not fake.has_contact(EMAIL)
        assert instance.erase(person(), CONTEXT).status == "not_found"
    finally:
        instance.close()
        fake.stop()


def test_other_contacts_untouched_and_erasing_twice_is_not_found(fake: FakeMailjet,
                                                                 connector: DeclarativeConnector) -> None:
    fake.add_contact(EMAIL)
    fake.add_contact("someone@example.net")
    assert connector.erase(person(EMAIL.upper()), CONTEXT).status == "erased"
    assert fake.has_contact("someone@example.net")
    assert connector.erase(person(), CONTEXT).status == "not_found"


def test_the_address_can_be_uploaded_again(fake: FakeMailjet, connector: DeclarativeConnector) -> None:
    first = fake.add_contact(EMAIL)
    connector.erase(person(), CONTEXT)
    again = requests.post(f"{fake.url}/v3/REST/contact", auth=AUTH, json={"Email": EMAIL}, timeout=5)
    assert again.status_code == 201 and again.json()["Data"][0]["ID"] != first
    assert connector.erase(person(), CONTEXT).status == "erased"


@pytest.mark.parametrize("lookup_missing", ["404", "empty"])
def test_unknown_address_either_way_is_not_found(lookup_missing: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    fake = start(lookup_missing=lookup_missing)
    instance = build(fake, monkeypatch)
    try:
        answer = requests.get(f"{fake.url}/v3/REST/contact/nobody%40example.net", auth=AUTH, timeout=5)
        assert answer.status_code == (404 if lookup_missing == "404" else 200)
        if lookup_missing == "empty":
            assert answer.json() == {"Count": 0, "Data": [], "Total": 0}
        result = instance.erase(person("nobody@example.net"), CONTEXT)
        assert result.status == "not_found" and result.evidence and result.evidence.records_affected == 0
        assert result.evidence.assurance is None and not result.evidence.residual, "erased results only"
    finally:
        instance.close()
        fake.stop()


@pytest.mark.parametrize("delete_missing_status", [404, 200])
def test_contact_gone_between_lookup_and_delete(delete_missing_status: int,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Someone else deleted the contact after our lookup: 404 is not_found; a 200 no-op reads as erased."""
    fake = start(delete_missing_status=delete_missing_status)
    contact_id = fake.add_contact(EMAIL)
    original = fake.handle

    def lookup_then_vanish(method: str, path: str, *rest: Any) -> Reply:
        reply = original(method, path, *rest)
        if method == "GET" and path.startswith("/v3/REST/contact/"):
            fake.contacts.pop(contact_id, None)
        return reply

    fake.handle = lookup_then_vanish  # type: ignore[assignment,method-assign]
    instance = build(fake, monkeypatch)
    try:
        result = instance.erase(person(), CONTEXT)
        assert result.status == ("not_found" if delete_missing_status == 404 else "erased")
        assert not fake.has_contact(EMAIL)
    finally:
        instance.close()
        fake.stop()


@pytest.mark.parametrize("delete_missing_status", [404, 200])
def test_deleting_an_anonymised_contact_again(delete_missing_status: int) -> None:
    fake = start(delete_missing_status=delete_missing_status)
    try:
        contact_id = fake.add_contact(EMAIL)
        first = requests.delete(f"{fake.url}/v4/contacts/{contact_id}", auth=AUTH, timeout=5)
        again = requests.delete(f"{fake.url}/v4/contacts/{contact_id}", auth=AUTH, timeout=5)
        assert first.status_code == 200 and first.json()["Name"] == "Anonymized"
        assert again.status_code == delete_missing_status
    finally:
        fake.stop()


def test_bare_429_is_retried_with_backoff(fake: FakeMailjet, connector: DeclarativeConnector) -> None:
    fake.add_contact(EMAIL)
    requests.post(f"{fake.url}/__fake__/faults", json={"status": 429}, timeout=5)
    with pytest.raises(RetryableError) as info:
        connector.erase(person(), CONTEXT)
    assert info.value.http_status == 429 and info.value.retry_after_s is None
    requests.post(f"{fake.url}/__fake__/faults", json={"status": 429}, timeout=5)
    waits: list[float] = []
    result = call_with_retries(lambda: connector.erase(person(), CONTEXT), attempts=3, max_wait_s=5,
                               backoff_cap_s=0.01, sleep=waits.append)
    assert result.status == "erased" and len(waits) == 1 and waits[0] <= 0.01


def test_the_optional_limiter_answers_a_bare_429(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = start(limit_per_window=2, window_s=60)
    try:
        answers = [requests.get(f"{fake.url}/v3/REST/contact", auth=AUTH, timeout=5) for _ in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 429]
        assert not any(h.lower().startswith(("retry-after", "x-ratelimit")) for h in answers[2].headers)
    finally:
        fake.stop()


@pytest.mark.parametrize("wrong", ["TEST_MJ_PUBLIC", "TEST_MJ_PRIVATE"])
def test_either_wrong_key_is_an_auth_error(fake: FakeMailjet, monkeypatch: pytest.MonkeyPatch,
                                           wrong: str) -> None:
    fake.add_contact(EMAIL)
    instance = build(fake, monkeypatch)
    instance.close()
    monkeypatch.setenv(wrong, "wrong")
    settings = settings_model("mailjet").model_validate(
        {"base_url": fake.url, "secrets": {"api_key": "TEST_MJ_PUBLIC", "secret_key": "TEST_MJ_PRIVATE"}})
    broken = build_connector("mailjet", "mailjet", settings)
    try:
        with pytest.raises(AuthError) as info:
            broken.erase(person(), CONTEXT)
    finally:
        broken.close()
    assert wrong in str(info.value) and EMAIL not in str(info.value)
    assert fake.has_contact(EMAIL)


def test_missing_private_key_names_its_variable(fake: FakeMailjet, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_MJ_PUBLIC", PUBLIC)
    monkeypatch.delenv("TEST_MJ_PRIVATE", raising=False)
    settings = settings_model("mailjet").model_validate(
        {"base_url": fake.url, "secrets": {"api_key": "TEST_MJ_PUBLIC", "secret_key": "TEST_MJ_PRIVATE"}})
    with pytest.raises(ConfigError, match="TEST_MJ_PRIVATE"):
        build_connector("mailjet", "mailjet", settings)


def test_errors_name_routes_not_people(fake: FakeMailjet, connector: DeclarativeConnector) -> None:
    fake.add_contact(EMAIL)
    requests.post(f"{fake.url}/__fake__/faults", json={"status": 500}, timeout=5)
    with pytest.raises(RetryableError) as info:
        connector.erase(person(), CONTEXT)
    assert "GET /v3/REST/contact/{identity}" in str(info.value) and EMAIL not in str(info.value)


def test_check_lists_one_contact(connector: DeclarativeConnector) -> None:
    assert connector.check().result == "ok"
