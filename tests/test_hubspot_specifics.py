"""HubSpot specifics: the blocklisting gdpr-delete, the lookup that reports not_found honestly,
the delayed purge, and the 429 policies (SECONDLY vs DAILY) with the fake's UNCONFIRMED switches."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from connectors.base import Connector, RetryableError, TaskContext
from connectors.http import call_with_retries, until_next_midnight_s
from connectors.pacing import PACERS
from connectors.registry import build_connector, settings_model
from schemas import Identity, SubjectIdentities
from tests.fakes.hubspot import FakeHubSpot

TOKEN = "pat-eu1-specifics-token"
EMAIL = "jana.novak@example.net"
CONTEXT = TaskContext(request_id="7d5e3c1a-4b2f-4c8d-9e6f-0a1b2c3d4e5f", system="hubspot", attempt=1)


def person(email: str = EMAIL) -> SubjectIdentities:
    return SubjectIdentities(identities=[Identity(identity_type="email", identity_value=email)])


def start(**switches: Any) -> FakeHubSpot:
    fake = FakeHubSpot({TOKEN}, **switches)
    fake.start()
    return fake


@pytest.fixture
def fake() -> Iterator[FakeHubSpot]:
    server = start()
    yield server
    server.stop()


def connect(fake: FakeHubSpot, monkeypatch: pytest.MonkeyPatch) -> Connector:
    monkeypatch.setenv("TEST_HUBSPOT_TOKEN", TOKEN)
    settings = settings_model("hubspot").model_validate(
        {"base_url": fake.url, "secrets": {"token": "TEST_HUBSPOT_TOKEN"}})
    return build_connector("hubspot", "hubspot", settings)


def api(fake: FakeHubSpot, path: str, body: Any) -> requests.Response:
    return requests.post(f"{fake.url}{path}", json=body, headers={"authorization": f"Bearer {TOKEN}"},
                         timeout=5)


def by_email(email: str) -> dict[str, Any]:
    return {"filterGroups": [{"filters": [{"propertyName": "email", "operator": "EQ", "value": email}]}]}


def test_fake_gdpr_delete_by_email_answers_204_and_blocklists_even_an_unknown_address(
        fake: FakeHubSpot) -> None:
    unknown = api(fake, "/crm/v3/objects/contacts/gdpr-delete",
                  {"objectId": "nobody@example.net", "idProperty": "email"})
    assert unknown.status_code == 204 and not unknown.content
    assert fake.is_blocklisted("nobody@example.net")
    fake.add_contact(EMAIL)
    known = api(fake, "/crm/v3/objects/contacts/gdpr-delete",
                {"objectId": EMAIL.upper(), "idProperty": "email"})
    assert known.status_code == 204
    assert not fake.has_contact(EMAIL) and fake.awaits_purge(EMAIL) and fake.is_blocklisted(EMAIL)
    assert fake.purge() == 1 and not fake.awaits_purge(EMAIL)


def test_fake_search_and_daily_headers_on_every_response(fake: FakeHubSpot) -> None:
    contact_id = fake.add_contact(EMAIL)
    response = api(fake, "/crm/v3/objects/contacts/search", by_email(EMAIL))
    assert response.json()["total"] == 1 and response.json()["results"][0]["id"] == contact_id
    assert response.headers["X-HubSpot-RateLimit-Daily"]
    assert response.headers["X-HubSpot-RateLimit-Daily-Remaining"]
    assert "X-HubSpot-RateLimit-Max" not in response.headers, "interval headers: UNCONFIRMED, off by default"
    refused = requests.post(f"{fake.url}/crm/v3/objects/contacts/search", json={},
                            headers={"authorization": "Bearer wrong"}, timeout=5)
    assert refused.status_code == 401 and refused.json()["category"] == "INVALID_AUTHENTICATION"


@pytest.mark.parametrize("status", [204, 404])
def test_fake_unknown_numeric_id_answer_is_a_switch(status: int) -> None:
    server = start(unknown_id_status=status)
    try:
        response = api(server, "/crm/v3/objects/contacts/gdpr-delete", {"objectId": "999999"})
        assert response.status_code == status
    finally:
        server.stop()


def test_connector_erases_by_id_and_the_purge_follows(fake: FakeHubSpot,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    contact_id = fake.add_contact(EMAIL)
    other = fake.add_contact("someone.else@example.net")
    connector = connect(fake, monkeypatch)
    try:
        result = connector.erase(person(EMAIL.upper()), CONTEXT)
    finally:
        connector.close()
    assert result.status == "erased" and result.evidence is not None
    assert result.evidence.reference == contact_id and result.evidence.http_status == 204
    assert result.evidence.records_affected == 1
    assert not fake.has_contact(EMAIL) and fake.awaits_purge(EMAIL)
    assert fake.has_contact("someone.else@example.net") and other in fake.contacts


def test_unknown_person_is_not_found_and_not_blocklisted(fake: FakeHubSpot,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    connector = connect(fake, monkeypatch)
    try:
        assert connector.erase(person(), CONTEXT).status == "not_found"
    finally:
        connector.close()
    assert not fake.is_blocklisted(EMAIL), "no gdpr-delete was sent for someone HubSpot does not know"


@pytest.mark.parametrize("retry_after", [True, False])
@pytest.mark.parametrize("interval_headers", [True, False])
def test_secondly_limit_with_and_without_the_unconfirmed_headers(
        retry_after: bool, interval_headers: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    server = start(retry_after=retry_after, interval_headers=interval_headers)
    try:
        server.add_contact(EMAIL)
        requests.post(f"{server.url}/__fake__/faults", json={"status": 429, "reset_s": 3},
                      timeout=5).raise_for_status()
        connector = connect(server, monkeypatch)
        with pytest.raises(RetryableError) as info:
            connector.erase(person(), CONTEXT)
        assert info.value.http_status == 429 and EMAIL not in str(info.value)
        if retry_after:
            assert info.value.retry_after_s == 3.0, "Retry-After is honoured when HubSpot sends it"
        else:
            assert info.value.retry_after_s is None, "no documented hint: jittered backoff"
        PACERS.reset()  # the first throttle's hold is over: `waits` below is virtual time
        waits: list[float] = []
        server.add_contact("second@example.net")
        requests.post(f"{server.url}/__fake__/faults", json={"status": 429, "reset_s": 2}, timeout=5)
        result = call_with_retries(lambda: connector.erase(person("second@example.net"), CONTEXT),
                                   attempts=3, max_wait_s=5, backoff_cap_s=0.01, sleep=waits.append)
        connector.close()
        assert result.status == "erased" and len(waits) == 1
        assert (abs(waits[0] - 2.0) <= 1.0) if retry_after else waits[0] <= 0.01
    finally:
        server.stop()


def test_real_secondly_bucket_answers_429_with_the_secondly_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    server = start(limit_per_window=1, window_s=30)
    try:
        assert api(server, "/crm/v3/objects/contacts/search", by_email(EMAIL)).status_code == 200
        refused = api(server, "/crm/v3/objects/contacts/search", {})
        assert refused.status_code == 429
        body = refused.json()
        assert body["errorType"] == "RATE_LIMIT" and body["policyName"] == "SECONDLY"
        assert body["message"] == "You have reached your ten secondly rolling limit."
        assert body["correlationId"]
    finally:
        server.stop()


def test_daily_limit_waits_until_the_day_ends(
        fake: FakeHubSpot, monkeypatch: pytest.MonkeyPatch) -> None:
    fake.add_contact(EMAIL)
    fake.exhaust_daily()
    refused = api(fake, "/crm/v3/objects/contacts/search", {})
    assert refused.status_code == 429 and refused.json()["policyName"] == "DAILY"
    assert refused.headers["X-HubSpot-RateLimit-Daily-Remaining"] == "0"
    connector = connect(fake, monkeypatch)
    try:
        with pytest.raises(RetryableError) as info:
            connector.erase(person(), CONTEXT)
        # connectors.http reads policyName DAILY in the body; without params.account_time_zone
        # the account's day is taken as UTC
        wait = info.value.retry_after_s
        assert info.value.http_status == 429 and wait is not None
        assert abs(wait - until_next_midnight_s(time.time(), "UTC")) <= 5
        assert EMAIL not in str(info.value)
        fake.reset_daily()
        PACERS.reset()  # the lane's hold ends with HubSpot's day: the fake's reset stands for it
        assert connector.erase(person(), CONTEXT).status == "erased"
    finally:
        connector.close()


@pytest.mark.parametrize("zone", ["US/Eastern", "Asia/Tokyo"])
def test_daily_limit_waits_until_midnight_in_the_accounts_time_zone(
        zone: str, fake: FakeHubSpot, monkeypatch: pytest.MonkeyPatch) -> None:
    """HubSpot's day is the account's (account-info timeZone), not UTC: a spent daily limit waits
    until midnight there."""
    fake.add_contact(EMAIL)
    fake.exhaust_daily()
    monkeypatch.setenv("TEST_HUBSPOT_TOKEN", TOKEN)
    settings = settings_model("hubspot").model_validate(
        {"base_url": fake.url, "secrets": {"token": "TEST_HUBSPOT_TOKEN"},
         "params": {"account_time_zone": zone}})
    connector = build_connector("hubspot", "hubspot", settings)
    try:
        with pytest.raises(RetryableError) as info:
            connector.erase(person(), CONTEXT)
        wait = info.value.retry_after_s
        assert info.value.http_status == 429 and wait is not None
        assert abs(wait - until_next_midnight_s(time.time(), zone)) <= 5
        assert abs(wait - until_next_midnight_s(time.time(), "UTC")) > 3600
        fake.reset_daily()
        PACERS.reset()  # the lane's hold ends with HubSpot's day: the fake's reset stands for it
        assert connector.erase(person(), CONTEXT).status == "erased"
    finally:
        connector.close()


def test_an_unknown_account_time_zone_is_a_settings_error(fake: FakeHubSpot) -> None:
    with pytest.raises(ValueError, match=r"params\.account_time_zone") as info:
        settings_model("hubspot").model_validate(
            {"base_url": fake.url, "secrets": {"token": "TEST_HUBSPOT_TOKEN"},
             "params": {"account_time_zone": "Mars/Olympus_Mons"}})
    assert "Mars/Olympus_Mons" in str(info.value) and "not a time zone" in str(info.value)


def test_an_erasure_is_accepted_and_names_the_purge_and_the_blocklisted_address(
        fake: FakeHubSpot, monkeypatch: pytest.MonkeyPatch) -> None:
    fake.add_contact(EMAIL)
    connector = connect(fake, monkeypatch)
    try:
        result = connector.erase(person(), CONTEXT)
    finally:
        connector.close()
    assert result.status == "erased" and result.evidence is not None
    evidence = result.evidence
    assert evidence.assurance == "accepted" and evidence.completes_by is not None
    assert [(r.what, r.until) for r in evidence.residual] == [
        ("deleted contact awaiting HubSpot's purge", evidence.completes_by),
        ("the e-mail address, on HubSpot's GDPR blocklist (it cannot be used again)", None)]
    assert fake.awaits_purge(EMAIL) and fake.is_blocklisted(EMAIL)
