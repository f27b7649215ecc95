"""Zendesk specifics: the two-step delete and its idempotency, the permanent-deletion limiter,
text/plain 429s with Retry-After, tickets that survive, and the UNCONFIRMED 404 body as a switch."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from connectors.base import AuthError, RetryableError, TaskContext
from connectors.http import call_with_retries
from connectors.processors.zendesk import ZendeskConnector, ZendeskSettings
from pipeline.devstack.fake_server import Reply, TokenBucket
from schemas import Identity, SubjectIdentities
from tests.fakes.zendesk import RECORD_NOT_FOUND, FakeZendesk

AGENT = "agent@site.example"
TOKEN = "zendesk-specifics-token"
EMAIL = "piet.jansen@example.net"
CONTEXT = TaskContext(request_id="7d5e3c1a-4b2f-4c8d-9e6f-0a1b2c3d4e5f", system="zendesk", attempt=1)


def person(email: str = EMAIL) -> SubjectIdentities:
    return SubjectIdentities(identities=[Identity(identity_type="email", identity_value=email)])


def connect(fake: FakeZendesk, monkeypatch: pytest.MonkeyPatch) -> ZendeskConnector:
    monkeypatch.setenv("TEST_ZENDESK_EMAIL", AGENT)
    monkeypatch.setenv("TEST_ZENDESK_TOKEN", TOKEN)
    return ZendeskConnector("zendesk", ZendeskSettings(base_url=fake.url, email_env="TEST_ZENDESK_EMAIL",
                                                       api_token_env="TEST_ZENDESK_TOKEN"))


@pytest.fixture
def fake() -> Iterator[FakeZendesk]:
    server = FakeZendesk(AGENT, {TOKEN})
    server.start()
    yield server
    server.stop()


@pytest.fixture
def connector(fake: FakeZendesk, monkeypatch: pytest.MonkeyPatch) -> Iterator[ZendeskConnector]:
    instance = connect(fake, monkeypatch)
    yield instance
    instance.close()


def test_two_steps_null_the_pii_and_tickets_are_reported_not_held(fake: FakeZendesk,
                                                                  connector: ZendeskConnector) -> None:
    user_id = fake.add_user(EMAIL, name="Piet Jansen", tickets=2)
    fake.add_user("other@example.net", tickets=1)
    result = connector.erase(person(EMAIL.upper()), CONTEXT)
    assert result.status == "erased" and result.holds == []
    assert result.evidence is not None and result.evidence.records_affected == 1
    assert result.evidence.http_status == 200
    assert result.evidence.reference and "2 requested ticket(s) remain" in result.evidence.reference
    assert not fake.has_user(EMAIL) and fake.has_user("other@example.net")
    gone = fake.permanently_deleted[user_id]
    assert gone["email"] is None and gone["phone"] is None and gone["name"] == "Permanently Deleted User"
    assert len(fake.tickets_of(user_id)) == 2, "tickets are separate objects: they survive"
    assert result.evidence.assurance == "confirmed"
    assert [(r.what, r.until) for r in result.evidence.residual] == [
        ("2 requested ticket(s) with their text (not redacted)", None)]
    assert connector.erase(person(), CONTEXT).status == "not_found"


def test_a_rate_limited_permanent_step_resumes_from_its_job_ref_even_in_a_new_process(
        fake: FakeZendesk, monkeypatch: pytest.MonkeyPatch) -> None:
    fake.add_user(EMAIL, tickets=1)
    fake.permanent_bucket = TokenBucket(0, 4.0)  # the 700-per-10-minutes limiter is spent
    first = connect(fake, monkeypatch)
    try:
        pending = first.erase(person(), CONTEXT)
    finally:
        first.close()
    assert pending.status == "pending" and pending.job_ref
    assert pending.poll_after_s is not None and abs(pending.poll_after_s - 4.0) <= 1.0, "Retry-After"
    assert fake.state_of(EMAIL) == "soft_deleted"
    assert EMAIL not in pending.job_ref
    fake.permanent_bucket = TokenBucket(700, 600.0)
    restarted = connect(fake, monkeypatch)
    try:
        result = restarted.erase(person(), dataclasses.replace(CONTEXT, attempt=2, job_ref=pending.job_ref))
    finally:
        restarted.close()
    assert result.status == "erased" and not fake.has_user(EMAIL)
    assert result.evidence is not None and result.evidence.reference
    assert "1 requested ticket(s) remain" in result.evidence.reference
    assert [r.what for r in result.evidence.residual] == [
        "1 requested ticket(s) with their text (not redacted)"]


class LosingFake(FakeZendesk):
    """Soft-deletes, then loses the answer (a 503 instead of the 200) once."""

    lose_next_soft_delete = True

    def handle(self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str],
               body: Any) -> Reply:
        reply = super().handle(method, path, query, headers, body)
        if (method == "DELETE" and path.startswith("/api/v2/users/") and reply.status == 200
                and self.lose_next_soft_delete):
            self.lose_next_soft_delete = False
            return Reply(503, {"error": "ServiceUnavailable"})
        return reply


@pytest.mark.parametrize("not_found_body", [RECORD_NOT_FOUND, None], ids=["RecordNotFound", "no-body"])
def test_a_retry_after_a_lost_soft_delete_goes_on_with_the_permanent_delete(
        not_found_body: dict[str, Any] | None, monkeypatch: pytest.MonkeyPatch) -> None:
    server = LosingFake(AGENT, {TOKEN}, not_found_body=not_found_body)
    server.start()
    instance = connect(server, monkeypatch)
    try:
        user_id = server.add_user(EMAIL)
        with pytest.raises(RetryableError):
            instance.erase(person(), CONTEXT)
        assert server.state_of(EMAIL) == "soft_deleted", "the search no longer finds the user"
        waits: list[float] = []
        result = call_with_retries(lambda: instance.erase(person(), CONTEXT), attempts=3, max_wait_s=5,
                                   backoff_cap_s=0.01, sleep=waits.append)
        assert result.status == "erased" and user_id in server.permanently_deleted
        assert instance.erase(person(), CONTEXT).status == "not_found", "the request's memory is cleared"
    finally:
        instance.close()
        server.stop()


@pytest.mark.parametrize("not_found_body", [RECORD_NOT_FOUND, None], ids=["RecordNotFound", "no-body"])
def test_fake_404_body_is_a_switch(not_found_body: dict[str, Any] | None) -> None:
    server = FakeZendesk(AGENT, {TOKEN}, not_found_body=not_found_body)
    server.start()
    try:
        response = requests.delete(f"{server.url}/api/v2/users/42.json", auth=(f"{AGENT}/token", TOKEN),
                                   timeout=5)
        assert response.status_code == 404
        if not_found_body is None:
            assert not response.content
        else:
            assert response.json() == {"error": "RecordNotFound", "description": "Not found"}
    finally:
        server.stop()


def test_429_is_text_plain_with_retry_after_and_is_honoured(fake: FakeZendesk,
                                                            connector: ZendeskConnector) -> None:
    fake.add_user(EMAIL)
    requests.post(f"{fake.url}/__fake__/faults", json={"status": 429, "reset_s": 2}, timeout=5)
    raw = requests.get(f"{fake.url}/api/v2/users/me.json", auth=(f"{AGENT}/token", TOKEN), timeout=5)
    assert raw.status_code == 429 and raw.headers["Retry-After"] == "2"
    assert raw.headers["content-type"].startswith("text/plain") and raw.text == "Too Many Requests"
    assert raw.headers["X-Rate-Limit"] == "700"
    requests.post(f"{fake.url}/__fake__/faults", json={"status": 429, "reset_s": 2}, timeout=5)
    with pytest.raises(RetryableError) as info:
        connector.erase(person(), CONTEXT)
    assert info.value.retry_after_s == 2.0 and EMAIL not in str(info.value)


def test_the_permanent_deletion_limiter_is_separate(fake: FakeZendesk) -> None:
    fake.permanent_bucket = TokenBucket(1, 600.0)
    auth = (f"{AGENT}/token", TOKEN)
    first, second = fake.add_user("a@example.net"), fake.add_user("b@example.net")
    for user_id in (first, second):
        assert requests.delete(f"{fake.url}/api/v2/users/{user_id}.json", auth=auth, timeout=5).ok
    assert requests.delete(f"{fake.url}/api/v2/deleted_users/{first}.json", auth=auth, timeout=5).ok
    refused = requests.delete(f"{fake.url}/api/v2/deleted_users/{second}.json", auth=auth, timeout=5)
    assert refused.status_code == 429 and 590 <= int(refused.headers["Retry-After"]) <= 600
    assert requests.get(f"{fake.url}/api/v2/users/me.json", auth=auth, timeout=5).ok, "other calls go on"


def test_list_endpoints_carry_ratelimit_headers(fake: FakeZendesk) -> None:
    response = requests.get(f"{fake.url}/api/v2/users/search.json", params={"query": EMAIL},
                            auth=(f"{AGENT}/token", TOKEN), timeout=5)
    assert response.ok and response.json()["users"] == []
    names = {k.lower() for k in response.headers}
    assert {"ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"} <= names


def test_bad_token_names_both_variables_and_the_check_works(fake: FakeZendesk, connector: ZendeskConnector,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    assert connector.check().result == "ok"  # the token acts as an admin
    fake.add_user(EMAIL)
    monkeypatch.setenv("TEST_ZENDESK_TOKEN", "wrong")
    wrong = ZendeskConnector("zendesk", ZendeskSettings(base_url=fake.url, email_env="TEST_ZENDESK_EMAIL",
                                                        api_token_env="TEST_ZENDESK_TOKEN"))
    try:
        with pytest.raises(AuthError) as info:
            wrong.erase(person(), CONTEXT)
    finally:
        wrong.close()
    assert "TEST_ZENDESK_EMAIL" in str(info.value) and "TEST_ZENDESK_TOKEN" in str(info.value)
    assert fake.state_of(EMAIL) == "active"
