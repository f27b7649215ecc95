"""Auth0 specifics: the client-credentials token (cached, refreshed once on 401), not_found from
the lookup (the delete answers 204 for anyone), the URL-encoded `|`, and x-ratelimit-reset."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from connectors.base import AuthError, RetryableError, TaskContext
from connectors.http import call_with_retries
from connectors.processors.auth0 import Auth0Connector, Auth0Settings
from pipeline.devstack.fake_server import Reply
from schemas import Identity, SubjectIdentities
from tests.fakes.auth0 import FakeAuth0

CLIENT_ID = "specificsClientId"
SECRET = "specifics-client-secret"
EMAIL = "marie.curie@example.net"
CONTEXT = TaskContext(request_id="7d5e3c1a-4b2f-4c8d-9e6f-0a1b2c3d4e5f", system="auth0", attempt=1)


def person(email: str = EMAIL) -> SubjectIdentities:
    return SubjectIdentities(identities=[Identity(identity_type="email", identity_value=email)])


def connect(fake: FakeAuth0, monkeypatch: pytest.MonkeyPatch, secret: str = SECRET,
            audience: str | None = None) -> Auth0Connector:
    monkeypatch.setenv("TEST_AUTH0_ID", CLIENT_ID)
    monkeypatch.setenv("TEST_AUTH0_SECRET", secret)
    return Auth0Connector("auth0", Auth0Settings(base_url=fake.url, client_id_env="TEST_AUTH0_ID",
                                                 client_secret_env="TEST_AUTH0_SECRET", audience=audience))


def start(fake: FakeAuth0) -> FakeAuth0:
    fake.start()
    return fake


@pytest.fixture
def fake() -> Iterator[FakeAuth0]:
    server = start(FakeAuth0({CLIENT_ID: SECRET}))
    yield server
    server.stop()


@pytest.fixture
def connector(fake: FakeAuth0, monkeypatch: pytest.MonkeyPatch) -> Iterator[Auth0Connector]:
    instance = connect(fake, monkeypatch)
    yield instance
    instance.close()


def test_erases_every_account_with_the_pipe_url_encoded(fake: FakeAuth0, connector: Auth0Connector) -> None:
    database = fake.add_user(EMAIL)
    social = fake.add_user(EMAIL, connection="google-oauth2")
    fake.add_user("someone.else@example.net")
    result = connector.erase(person(EMAIL.upper()), CONTEXT)  # asked as given, then lowercased
    assert result.status == "erased" and result.evidence is not None
    assert result.evidence.http_status == 204 and result.evidence.records_affected == 2
    assert result.evidence.reference and database in result.evidence.reference
    assert social in result.evidence.reference
    assert not fake.has_user(EMAIL) and fake.has_user("someone.else@example.net")
    encoded = sorted(f"/api/v2/users/{i.replace('|', '%7C')}" for i in (database, social))
    assert sorted(fake.delete_paths) == encoded


def test_not_found_comes_from_the_lookup_and_no_delete_is_sent(fake: FakeAuth0,
                                                               connector: Auth0Connector) -> None:
    token = requests.post(f"{fake.url}/oauth/token", json={
        "grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": SECRET,
        "audience": f"{fake.url}/api/v2/"}, timeout=5).json()["access_token"]
    by_design = requests.delete(f"{fake.url}/api/v2/users/auth0%7Cnobody", timeout=5,
                                headers={"authorization": f"Bearer {token}"})
    assert by_design.status_code == 204, "Auth0 answers 204 for a user that does not exist"
    fake.delete_paths.clear()
    assert connector.erase(person(), CONTEXT).status == "not_found"
    assert fake.delete_paths == []


def test_mixed_case_address_kept_by_a_social_connection(fake: FakeAuth0, connector: Auth0Connector) -> None:
    fake.add_user("Marie.Curie@Example.net", connection="google-oauth2")
    assert connector.erase(person("Marie.Curie@Example.net"), CONTEXT).status == "erased"


def test_token_is_cached_and_fetched_again_before_it_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    server = start(FakeAuth0({CLIENT_ID: SECRET}, token_lifetime_s=1))
    instance = connect(server, monkeypatch)
    try:
        server.add_user(EMAIL)
        assert instance.erase(person(), CONTEXT).status == "erased"
        issued = server.tokens_issued
        time.sleep(1.1)
        assert instance.erase(person(), CONTEXT).status == "not_found"
        assert server.tokens_issued == issued + 1
    finally:
        instance.close()
        server.stop()


def test_token_is_reused_across_erasures(fake: FakeAuth0, connector: Auth0Connector) -> None:
    for n in range(3):
        fake.add_user(f"p{n}@example.net")
        assert connector.erase(person(f"p{n}@example.net"), CONTEXT).status == "erased"
    assert fake.tokens_issued == 1


def test_a_refused_token_is_refreshed_once(fake: FakeAuth0, connector: Auth0Connector) -> None:
    fake.add_user(EMAIL)
    assert connector.erase(person("warm.up@example.net"), CONTEXT).status == "not_found"
    fake.revoke_tokens()  # e.g. rotated signing keys: the cached token is refused with 401
    assert connector.erase(person(), CONTEXT).status == "erased"
    assert fake.tokens_issued == 2


class RefusingFake(FakeAuth0):
    """Issues tokens the Management API then refuses (e.g. a client without the delete:users grant)."""

    def handle(self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str],
               body: Any) -> Reply:
        if path.startswith("/api/v2/"):
            self.revoke_tokens()
        return super().handle(method, path, query, headers, body)


def test_a_token_refused_twice_is_an_auth_error(monkeypatch: pytest.MonkeyPatch) -> None:
    server = start(RefusingFake({CLIENT_ID: SECRET}))
    instance = connect(server, monkeypatch)
    try:
        server.add_user(EMAIL)
        with pytest.raises(AuthError) as info:
            instance.erase(person(), CONTEXT)
    finally:
        instance.close()
        server.stop()
    assert server.tokens_issued == 2, "refreshed once, not in a loop"
    assert "TEST_AUTH0_ID" in str(info.value) and "TEST_AUTH0_SECRET" in str(info.value)
    assert EMAIL not in str(info.value)


def test_bad_client_credentials_name_both_variables(fake: FakeAuth0, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = requests.post(f"{fake.url}/oauth/token", timeout=5, json={
        "grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": "x"})
    assert raw.status_code == 401
    assert raw.json() == {"error": "access_denied", "error_description": "Unauthorized"}
    fake.add_user(EMAIL)
    instance = connect(fake, monkeypatch, secret="wrong")
    try:
        with pytest.raises(AuthError) as info:
            instance.erase(person(), CONTEXT)
    finally:
        instance.close()
    message = str(info.value)
    assert "auth0" in message and "TEST_AUTH0_ID" in message and "TEST_AUTH0_SECRET" in message
    assert "POST /oauth/token" in message and EMAIL not in message and fake.has_user(EMAIL)


def test_audience_setting_for_custom_domains(monkeypatch: pytest.MonkeyPatch) -> None:
    audience = "https://tenant.eu.auth0.com/api/v2/"
    server = start(FakeAuth0({CLIENT_ID: SECRET}, audience=audience))
    try:
        server.add_user(EMAIL)
        default = connect(server, monkeypatch)
        with pytest.raises(AuthError):
            default.erase(person(), CONTEXT)  # 403 access_denied: service not enabled within domain
        default.close()
        configured = connect(server, monkeypatch, audience=audience)
        assert configured.erase(person(), CONTEXT).status == "erased"
        configured.close()
    finally:
        server.stop()


def test_custom_domain_calls_go_there_with_the_canonical_domain_as_audience(
        monkeypatch: pytest.MonkeyPatch) -> None:
    server = start(FakeAuth0({CLIENT_ID: SECRET}, canonical_domain="tenant.eu.auth0.com"))
    monkeypatch.setenv("TEST_AUTH0_ID", CLIENT_ID)
    monkeypatch.setenv("TEST_AUTH0_SECRET", SECRET)
    try:
        server.add_user(EMAIL)
        instance = Auth0Connector("auth0", Auth0Settings(
            base_url=server.url, canonical_domain="tenant.eu.auth0.com", client_id_env="TEST_AUTH0_ID",
            client_secret_env="TEST_AUTH0_SECRET"))
        try:
            assert instance.erase(person(), CONTEXT).status == "erased"
        finally:
            instance.close()
        assert server.audiences_asked == ["https://tenant.eu.auth0.com/api/v2/"]
        assert not server.has_user(EMAIL)
    finally:
        server.stop()


def test_a_custom_domain_without_its_canonical_domain_is_a_settings_error() -> None:
    with pytest.raises(ValueError, match="canonical_domain"):
        Auth0Settings(base_url="https://login.example.com")
    canonical = Auth0Settings(base_url="https://tenant.eu.auth0.com")
    assert canonical.management_audience() == "https://tenant.eu.auth0.com/api/v2/"
    custom = Auth0Settings(base_url="https://login.example.com", canonical_domain="tenant.us.auth0.com")
    assert custom.management_audience() == "https://tenant.us.auth0.com/api/v2/"


def test_rate_limit_headers_give_the_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    server = start(FakeAuth0({CLIENT_ID: SECRET}, limit_per_window=1, window_s=4))
    instance = connect(server, monkeypatch)
    try:
        server.add_user(EMAIL)
        with pytest.raises(RetryableError) as info:
            instance.erase(person(), CONTEXT)  # lookup allowed, the delete refused
        assert info.value.http_status == 429 and info.value.retry_after_s is not None
        assert 2.0 <= info.value.retry_after_s <= 5.0, "x-ratelimit-reset is a unix time"
        assert EMAIL not in str(info.value)
    finally:
        instance.close()
        server.stop()


class LosingFake(FakeAuth0):
    """Deletes the user, then loses the answer (a 503 instead of the 204) once."""

    lose_next_delete = True

    def handle(self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str],
               body: Any) -> Reply:
        reply = super().handle(method, path, query, headers, body)
        if method == "DELETE" and reply.status == 204 and self.lose_next_delete:
            self.lose_next_delete = False
            return Reply(503, {"statusCode": 503, "error": "Service Unavailable"})
        return reply


def test_a_retry_after_a_lost_delete_answer_still_reports_erased(monkeypatch: pytest.MonkeyPatch) -> None:
    server = start(LosingFake({CLIENT_ID: SECRET}))
    instance = connect(server, monkeypatch)
    try:
        server.add_user(EMAIL)
        result = call_with_retries(lambda: instance.erase(person(), CONTEXT), attempts=3, max_wait_s=5,
                                   backoff_cap_s=0.01, sleep=lambda _: None)
        assert result.status == "erased" and not server.has_user(EMAIL)
        assert instance.erase(person(), CONTEXT).status == "not_found", "the request's memory is cleared"
    finally:
        instance.close()
        server.stop()
