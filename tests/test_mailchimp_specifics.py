"""Mailchimp specifics: list fan-out, exact matches only, forgotten addresses, the concurrency cap,
problem+json errors, the data centre from the key and the fake's UNCONFIRMED switch."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from connectors.base import AuthError, ConfigError, RetryableError, TaskContext
from connectors.http import call_with_retries
from connectors.processors.mailchimp import MailchimpConnector, MailchimpSettings
from schemas import Identity, SubjectIdentities
from tests.fakes.mailchimp import FakeMailchimp

KEY = "0123456789abcdef0123456789abcdef-us14"
EMAIL = "Lea.Tester@example.net"
CONTEXT = TaskContext(request_id="7d5e3c1a-4b2f-4c8d-9e6f-0a1b2c3d4e5f", system="mailchimp", attempt=1)
AUTH = ("anyone", KEY)


def person(email: str = EMAIL) -> SubjectIdentities:
    return SubjectIdentities(identities=[Identity(identity_type="email", identity_value=email)])


def md5(email: str) -> str:
    return hashlib.md5(email.lower().encode()).hexdigest()


def start(**switches: object) -> FakeMailchimp:
    fake = FakeMailchimp({KEY}, **switches)  # type: ignore[arg-type]
    fake.start()
    return fake


def build(fake: FakeMailchimp, monkeypatch: pytest.MonkeyPatch) -> MailchimpConnector:
    monkeypatch.setenv("TEST_MAILCHIMP_KEY", KEY)
    return MailchimpConnector("mailchimp", MailchimpSettings(base_url=fake.url,
                                                             api_key_env="TEST_MAILCHIMP_KEY"))


@pytest.fixture
def fake() -> Iterator[FakeMailchimp]:
    server = start()
    yield server
    server.stop()


@pytest.fixture
def connector(fake: FakeMailchimp, monkeypatch: pytest.MonkeyPatch) -> Iterator[MailchimpConnector]:
    instance = build(fake, monkeypatch)
    yield instance
    instance.close()


def test_every_list_holding_the_address_is_erased(fake: FakeMailchimp, connector: MailchimpConnector) -> None:
    news, shop, other = fake.add_list("News"), fake.add_list("Shop"), fake.add_list("Other")
    fake.add_member(news, EMAIL)
    fake.add_member(shop, EMAIL.lower())
    fake.add_member(other, "someone@example.net")
    result = connector.erase(person(), CONTEXT)
    assert result.status == "erased" and result.evidence is not None
    assert result.evidence.records_affected == 2 and result.evidence.http_status == 204
    assert news in (result.evidence.reference or "") and shop in (result.evidence.reference or "")
    assert fake.holds(EMAIL) == [] and fake.holds("someone@example.net") == [other]


def test_partial_matches_are_left_alone(fake: FakeMailchimp, connector: MailchimpConnector) -> None:
    news = fake.add_list()
    fake.add_member(news, "x" + EMAIL)  # contains the address: in full_search, never in exact_matches
    assert connector.erase(person(), CONTEXT).status == "not_found"
    assert fake.holds("x" + EMAIL) == [news]


def test_archived_members_are_erased_too(fake: FakeMailchimp, connector: MailchimpConnector) -> None:
    news = fake.add_list()
    fake.add_member(news, EMAIL)
    archived = requests.delete(f"{fake.url}/3.0/lists/{news}/members/{md5(EMAIL)}", auth=AUTH, timeout=5)
    assert archived.status_code == 204 and fake.holds(EMAIL) == [news], "archiving keeps the data"
    assert connector.erase(person(), CONTEXT).status == "erased"
    assert fake.holds(EMAIL) == []


def test_a_permanently_deleted_address_cannot_be_added_again(fake: FakeMailchimp,
                                                             connector: MailchimpConnector) -> None:
    news = fake.add_list()
    fake.add_member(news, EMAIL)
    connector.erase(person(), CONTEXT)
    again = requests.post(f"{fake.url}/3.0/lists/{news}/members", auth=AUTH, timeout=5,
                          json={"email_address": EMAIL, "status": "subscribed"})
    assert again.status_code == 400
    assert again.headers["content-type"].startswith("application/problem+json")
    assert again.json()["title"] == "Forgotten Email Not Subscribed"
    assert fake.holds(EMAIL) == []
    assert connector.erase(person(), CONTEXT).status == "not_found"


@pytest.mark.parametrize("unknown_member_status", [404, 204])
def test_unknown_member_switch(unknown_member_status: int, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = start(unknown_member_status=unknown_member_status)
    news = fake.add_list()
    try:
        answer = requests.post(f"{fake.url}/3.0/lists/{news}/members/{md5(EMAIL)}/actions/delete-permanent",
                               auth=AUTH, timeout=5)
        assert answer.status_code == unknown_member_status
        if unknown_member_status == 404:
            assert answer.json()["title"] == "Resource Not Found"
            assert answer.headers["content-type"].startswith("application/problem+json")
        instance = build(fake, monkeypatch)
        try:
            assert instance.erase(person(), CONTEXT).status == "not_found"
            fake.add_member(news, EMAIL)
            assert instance.erase(person(), CONTEXT).status == "erased"
            assert instance.erase(person(), CONTEXT).status == "not_found"
        finally:
            instance.close()
    finally:
        fake.stop()


def test_member_gone_between_search_and_delete(monkeypatch: pytest.MonkeyPatch) -> None:
    """404 after the search means someone else deleted it first: nothing erased by us."""
    fake = start(unknown_member_status=404)
    news = fake.add_list()
    fake.add_member(news, EMAIL)
    original = fake.handle

    def search_then_vanish(method: str, path: str, *rest: object) -> object:
        reply = original(method, path, *rest)  # type: ignore[arg-type]
        if path.endswith("/search-members"):
            fake.lists[news].clear()
        return reply

    fake.handle = search_then_vanish  # type: ignore[assignment,method-assign]
    instance = build(fake, monkeypatch)
    try:
        assert instance.erase(person(), CONTEXT).status == "not_found"
    finally:
        instance.close()
        fake.stop()


def test_more_than_ten_simultaneous_connections_get_429_without_a_wait_hint() -> None:
    fake = start(work_s=0.3)
    try:
        def ping(_: int) -> requests.Response:
            return requests.get(f"{fake.url}/3.0/ping", auth=AUTH, timeout=10)

        with ThreadPoolExecutor(max_workers=15) as pool:
            answers = list(pool.map(ping, range(15)))
        statuses = sorted(a.status_code for a in answers)
        assert statuses.count(200) >= 1 and statuses.count(429) >= 1, statuses
        limited = next(a for a in answers if a.status_code == 429)
        assert limited.json()["title"] == "TooManyRequests"
        assert "10 simultaneous connections" in limited.json()["detail"]
        assert not any(h.lower().startswith(("retry-after", "x-ratelimit")) for h in limited.headers)
        assert fake.peak_in_flight > 10 and fake.peak_served <= 10 and fake.in_flight == 0
    finally:
        fake.stop()


def test_the_connector_backs_off_on_429(fake: FakeMailchimp, connector: MailchimpConnector) -> None:
    news = fake.add_list()
    fake.add_member(news, EMAIL)
    requests.post(f"{fake.url}/__fake__/faults", json={"status": 429, "count": 2}, timeout=5)
    with pytest.raises(RetryableError) as info:
        connector.erase(person(), CONTEXT)
    assert info.value.retry_after_s is None and info.value.http_status == 429
    waits: list[float] = []
    result = call_with_retries(lambda: connector.erase(person(), CONTEXT), attempts=3, max_wait_s=5,
                               backoff_cap_s=0.01, sleep=waits.append)
    assert result.status == "erased" and len(waits) == 1 and waits[0] <= 0.01


def test_bad_key_is_an_auth_error_naming_the_variable(fake: FakeMailchimp,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_MAILCHIMP_KEY", "wrong-us14")
    instance = MailchimpConnector("mailchimp", MailchimpSettings(base_url=fake.url,
                                                                 api_key_env="TEST_MAILCHIMP_KEY"))
    try:
        with pytest.raises(AuthError) as info:
            instance.erase(person(), CONTEXT)
    finally:
        instance.close()
    assert "TEST_MAILCHIMP_KEY" in str(info.value) and "GET /3.0/search-members" in str(info.value)
    answer = requests.get(f"{fake.url}/3.0/ping", auth=("x", "wrong"), timeout=5)
    assert answer.status_code == 401 and answer.json()["title"] == "API Key Invalid"


def test_errors_name_routes_not_people(fake: FakeMailchimp, connector: MailchimpConnector) -> None:
    news = fake.add_list()
    fake.add_member(news, EMAIL)
    original = fake.handle

    def fail_delete(method: str, path: str, *rest: object) -> object:
        if path.endswith("/delete-permanent"):
            from tests.fakes.mailchimp import problem_reply
            return problem_reply(500, "Internal Server Error", "boom")
        return original(method, path, *rest)  # type: ignore[arg-type]

    fake.handle = fail_delete  # type: ignore[assignment,method-assign]
    with pytest.raises(RetryableError) as info:
        connector.erase(person(), CONTEXT)
    message = str(info.value)
    assert "{subscriber_hash}" in message and md5(EMAIL) not in message
    assert EMAIL.lower() not in message.lower()


def test_data_centre_comes_from_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_MAILCHIMP_KEY", KEY)
    instance = MailchimpConnector("mailchimp", MailchimpSettings(api_key_env="TEST_MAILCHIMP_KEY"))
    assert instance._base_url == "https://us14.api.mailchimp.com"
    instance.close()
    monkeypatch.setenv("TEST_MAILCHIMP_KEY", "no-suffix-here!")
    with pytest.raises(ConfigError, match="TEST_MAILCHIMP_KEY") as info:
        MailchimpConnector("mailchimp", MailchimpSettings(api_key_env="TEST_MAILCHIMP_KEY"))
    assert "no-suffix-here" not in str(info.value)


@pytest.mark.parametrize("throttle_status", [429, 403])
def test_throttling_backs_off_whether_429_or_a_bare_403(throttle_status: int,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """At exceptionally high volumes Mailchimp throttles with a 403 without a JSON body: that is
    not an auth failure, the task backs off and then erases."""
    fake = start(throttle_status=throttle_status)
    instance = build(fake, monkeypatch)
    try:
        news = fake.add_list()
        fake.add_member(news, EMAIL)
        fake.throttle(1)
        answer = requests.get(f"{fake.url}/3.0/ping", auth=AUTH, timeout=5)
        assert answer.status_code == throttle_status
        assert (answer.content == b"") == (throttle_status == 403)
        fake.throttle(2)
        with pytest.raises(RetryableError) as info:
            instance.erase(person(), CONTEXT)
        assert info.value.http_status == throttle_status and info.value.retry_after_s is None
        waits: list[float] = []
        result = call_with_retries(lambda: instance.erase(person(), CONTEXT), attempts=3, max_wait_s=5,
                                   backoff_cap_s=0.01, sleep=waits.append)
        assert result.status == "erased" and fake.holds(EMAIL) == [] and len(waits) == 1
    finally:
        instance.close()
        fake.stop()


def test_a_403_problem_body_stays_an_auth_error(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = start(disabled_keys={KEY})
    instance = build(fake, monkeypatch)
    try:
        answer = requests.get(f"{fake.url}/3.0/ping", auth=AUTH, timeout=5)
        assert answer.status_code == 403 and answer.json()["title"] == "User Disabled"
        with pytest.raises(AuthError, match="TEST_MAILCHIMP_KEY"):
            instance.erase(person(), CONTEXT)
    finally:
        instance.close()
        fake.stop()
