"""ProcessorClient and the auth objects, against a tiny real HTTP server.

Path parameters are quoted (an e-mail never changes the path's shape), errors name the
route template (never the URL), each auth object sets its header, an OAuth2 client-credentials
token is cached and fetched again before it expires (and once more when refused), and
in-process retries wait what the processor announced.
"""

from __future__ import annotations

import base64
import threading
from collections import deque
from collections.abc import Iterator
from typing import Any

import pytest

from connectors.auth import ApiKeyHeaderAuth, BearerTokenAuth, HttpBasicAuth, OAuth2ClientCredentials
from connectors.base import AuthError, PermanentError, RetryableError
from connectors.client import ProcessorClient, fill_path
from connectors.http import call_with_retries
from connectors.retry import RetryPolicy
from pipeline.devstack.fake_server import FakeProcessor, Reply

EMAIL = "ada+news/2024@example.net"
CONTACT = "/v3/contacts/{identifier}"


class RecordingFake(FakeProcessor):
    """Answers queued replies (200 {} when none) and records what it was sent."""

    name = "recording"

    def __init__(self) -> None:
        super().__init__()
        self.replies: deque[Reply] = deque()
        self.seen: list[tuple[str, str, dict[str, str]]] = []
        self._lock = threading.Lock()

    def handle(self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str],
               body: Any) -> Reply:
        with self._lock:
            self.seen.append((method, path, headers))
            return self.replies.popleft() if self.replies else Reply(200, {})


class TokenFake(FakeProcessor):
    """An OAuth2 token endpoint (`POST /oauth/token`) and an API taking only the newest token."""

    name = "oauth"

    def __init__(self, lifetime_s: int = 3600) -> None:
        super().__init__()
        self.lifetime_s = lifetime_s
        self.issued: list[str] = []
        self.grants: list[Any] = []
        self.refuse_all = False
        self._lock = threading.Lock()

    def handle(self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str],
               body: Any) -> Reply:
        with self._lock:
            if path == "/oauth/token":
                self.grants.append(body)
                if body.get("client_secret") != "s3cret":
                    return Reply(401, {"error": "access_denied"})
                token = f"token-{len(self.issued) + 1}"
                self.issued.append(token)
                return Reply(200, {"access_token": token, "token_type": "Bearer",
                                   "expires_in": self.lifetime_s})
            newest = self.issued[-1] if self.issued else None
            if self.refuse_all or headers.get("authorization") != f"Bearer {newest}":
                return Reply(401, {"message": "Invalid token"})
            return Reply(200, {"used": newest})


@pytest.fixture
def fake() -> Iterator[RecordingFake]:
    server = RecordingFake()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def client(fake: RecordingFake) -> Iterator[ProcessorClient]:
    with ProcessorClient("acme", fake.url + "/", secret_env="ACME_KEY") as instance:
        yield instance


# -- URL building ---------------------------------------------------------------
def test_path_params_are_quoted_so_the_path_keeps_its_shape(fake: RecordingFake,
                                                            client: ProcessorClient) -> None:
    assert fill_path(CONTACT, {"identifier": EMAIL}) == "/v3/contacts/ada%2Bnews%2F2024%40example.net"
    quoted = "ada%2Bnews%2F2024%40example.net"
    assert client.url(CONTACT, {"identifier": EMAIL}) == f"{fake.url}/v3/contacts/{quoted}"
    client.request("DELETE", CONTACT, {"identifier": EMAIL})
    method, path, _ = fake.seen[-1]
    assert method == "DELETE" and path.split("/") == ["", "v3", "contacts", quoted]


def test_a_missing_path_param_names_it() -> None:
    with pytest.raises(ValueError, match="'id'"):
        fill_path("/v1/customers/{id}", {})


def test_a_whole_url_is_used_as_it_is(fake: RecordingFake) -> None:
    with ProcessorClient("acme", "https://elsewhere.invalid") as other:
        assert other.url(fake.url + "/discovery") == fake.url + "/discovery"
        assert other.request("GET", fake.url + "/discovery", route="GET /discovery").status_code == 200


# -- errors name the route template -----------------------------------------------
@pytest.mark.parametrize(("status", "error"), [
    (400, PermanentError), (401, AuthError), (503, RetryableError)])
def test_errors_name_the_route_template_never_the_url(fake: RecordingFake, client: ProcessorClient,
                                                      status: int, error: type[Exception]) -> None:
    fake.replies.append(Reply(status, {"message": "no"}))
    with pytest.raises(error) as info:
        client.request("DELETE", CONTACT, {"identifier": EMAIL})
    message = str(info.value)
    assert f"HTTP {status} from DELETE {CONTACT}" in message
    assert "ada" not in message and "example.net" not in message and fake.url not in message
    if status == 401:
        assert "ACME_KEY" in message


def test_a_refused_connection_names_the_route_only() -> None:
    unused = RecordingFake()
    unused.start()
    url = unused.url
    unused.stop()
    with ProcessorClient("acme", url) as client, pytest.raises(RetryableError) as info:
        client.request("DELETE", CONTACT, {"identifier": EMAIL})
    assert f"on DELETE {CONTACT}" in str(info.value) and "ada" not in str(info.value)


def test_statuses_the_caller_handles_are_returned(fake: RecordingFake, client: ProcessorClient) -> None:
    fake.replies.append(Reply(404, {"message": "gone"}))
    assert client.request("DELETE", CONTACT, {"identifier": EMAIL}, return_statuses=(404,)).status_code == 404


def test_an_answer_that_is_not_json_names_the_route(fake: RecordingFake, client: ProcessorClient) -> None:
    fake.replies.append(Reply(200))  # an empty body
    with pytest.raises(PermanentError, match="GET /v1/things"):
        client.json("GET", "/v1/things")


# -- auth objects ------------------------------------------------------------------
@pytest.mark.parametrize(("auth", "header", "value"), [
    (BearerTokenAuth("tok-1"), "authorization", "Bearer tok-1"),
    (HttpBasicAuth("user", "pa:ss"), "authorization", "Basic " + base64.b64encode(b"user:pa:ss").decode()),
    (ApiKeyHeaderAuth("api-key", "key-1"), "api-key", "key-1"),
])
def test_each_auth_object_sets_its_header(fake: RecordingFake, auth: Any, header: str, value: str) -> None:
    with ProcessorClient("acme", fake.url, auth=auth) as client:
        client.request("GET", "/v1/me")
    headers = fake.seen[-1][2]
    assert headers[header] == value and headers["accept"] == "application/json"


class Clock:
    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


@pytest.fixture
def token_fake() -> Iterator[TokenFake]:
    server = TokenFake(lifetime_s=600)
    server.start()
    yield server
    server.stop()


def oauth_client(server: TokenFake, clock: Clock, secret: str = "s3cret") -> tuple[ProcessorClient,
                                                                                   OAuth2ClientCredentials]:
    token_client = ProcessorClient("acme", server.url, secret_env="ACME_ID, ACME_SECRET")
    auth = OAuth2ClientCredentials(token_client, "/oauth/token", client_id="id-1", client_secret=secret,
                                   extra_grant={"audience": "https://api.example/"}, clock=clock)
    return ProcessorClient("acme", server.url, auth=auth, secret_env="ACME_ID, ACME_SECRET"), auth


def test_oauth2_token_is_cached_and_refreshed_before_it_expires(token_fake: TokenFake) -> None:
    clock = Clock()
    client, _ = oauth_client(token_fake, clock)
    with client:
        assert client.json("GET", "/api/things") == {"used": "token-1"}
        clock.now_s += 500
        assert client.json("GET", "/api/things") == {"used": "token-1"}, "cached while far from expiry"
        clock.now_s += 41  # 541 s of 600: within the last minute (capped at a tenth of the lifetime)
        assert client.json("GET", "/api/things") == {"used": "token-2"}, "refreshed before it expires"
    assert token_fake.issued == ["token-1", "token-2"]
    assert token_fake.grants[0] == {"grant_type": "client_credentials", "client_id": "id-1",
                                    "client_secret": "s3cret", "audience": "https://api.example/"}


def test_oauth2_token_refused_is_refreshed_once_then_an_auth_error(token_fake: TokenFake) -> None:
    clock = Clock()
    client, auth = oauth_client(token_fake, clock)
    with client:
        auth.token()
        token_fake.issued.append("rotated-elsewhere")  # the cached token-1 is now refused
        assert client.json("GET", "/api/things") == {"used": "token-3"}
        token_fake.refuse_all = True
        with pytest.raises(AuthError, match=r"HTTP 401 from GET /api/things.*ACME_ID, ACME_SECRET"):
            client.request("GET", "/api/things")
    assert len(token_fake.grants) == 3, "one fresh token per refusal, never a loop"


def test_oauth2_bad_client_credentials_name_the_token_route(token_fake: TokenFake) -> None:
    client, _ = oauth_client(token_fake, Clock(), secret="wrong")
    with client, pytest.raises(AuthError) as info:
        client.request("GET", "/api/things")
    assert "POST /oauth/token" in str(info.value) and "ACME_SECRET" in str(info.value)
    assert "wrong" not in str(info.value)


# -- retries -----------------------------------------------------------------------
def test_retries_honour_an_announced_wait(fake: RecordingFake) -> None:
    waits: list[float] = []
    fake.replies.extend([Reply(429, {}, {"Retry-After": "2"}), Reply(503, {}), Reply(204)])
    policy = RetryPolicy(max_attempts=3, base_s=0.5, jitter=False)
    with ProcessorClient("acme", fake.url, retry=policy, max_wait_s=5, sleep=waits.append) as client:
        assert client.request("DELETE", CONTACT, {"identifier": EMAIL}).status_code == 204
    assert waits == [2.0, 1.0], "the announced wait, then the policy's own backoff for attempt 2"


def test_an_announced_wait_beyond_max_wait_is_raised_not_slept(fake: RecordingFake) -> None:
    waits: list[float] = []
    fake.replies.append(Reply(429, {}, {"Retry-After": "120"}))
    with ProcessorClient("acme", fake.url, retry=RetryPolicy(max_attempts=5), max_wait_s=5,
                         sleep=waits.append) as client, pytest.raises(RetryableError) as info:
        client.request("DELETE", CONTACT, {"identifier": EMAIL})
    assert waits == [] and info.value.retry_after_s == 120.0


def test_the_default_is_a_single_attempt(fake: RecordingFake, client: ProcessorClient) -> None:
    fake.replies.extend([Reply(503, {}), Reply(204)])
    with pytest.raises(RetryableError):
        client.request("DELETE", CONTACT, {"identifier": EMAIL})
    assert len(fake.seen) == 1


def test_call_with_retries_takes_a_policy_or_the_old_keywords() -> None:
    waits: list[float] = []
    unavailable = RetryableError("acme", "503")
    calls: Iterator[str | Exception] = iter([unavailable, unavailable, "ok"])

    def operation() -> str:
        item = next(calls)
        if isinstance(item, Exception):
            raise item
        return item

    policy = RetryPolicy(max_attempts=3, base_s=1.0, multiplier=3.0, jitter=False)
    assert call_with_retries(operation, max_wait_s=30, sleep=waits.append, policy=policy) == "ok"
    assert waits == [1.0, 3.0]
    with pytest.raises(TypeError):
        call_with_retries(lambda: "ok", max_wait_s=5)
    assert all(0 <= RetryPolicy(cap_s=2.0).backoff_s(4) <= 2.0 for _ in range(50))
