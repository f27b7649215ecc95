"""How a processor client proves who it is: `requests` auth objects, one per scheme.

In the spirit of dlt's REST client auth: each object sets its header on every
request the session prepares, so a connector never builds an Authorization
header itself. `OAuth2ClientCredentials` also fetches its token (cached until
shortly before it expires) and, when the API refuses it with 401, fetches a
fresh one and sends the request again, once.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

import requests
from google.auth import exceptions as google_exceptions
from google.auth.transport import requests as google_requests
from google.oauth2 import service_account
from requests.auth import AuthBase, HTTPBasicAuth

from connectors.base import AuthError, PermanentError, RetryableError, require_secret

if TYPE_CHECKING:
    from connectors.client import ProcessorClient

TOKEN_MARGIN_S = 60.0
DEFAULT_TOKEN_LIFETIME_S = 3600.0


class BearerTokenAuth(AuthBase):
    """`Authorization: Bearer <token>`."""

    def __init__(self, token: str) -> None:
        self.token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.token}"
        return request


class HttpBasicAuth(HTTPBasicAuth):
    """`Authorization: Basic base64(username:password)`."""


class ApiKeyHeaderAuth(AuthBase):
    """The key in a header of the processor's choosing, e.g. Brevo's `api-key`."""

    def __init__(self, header: str, api_key: str) -> None:
        self.header = header
        self.api_key = api_key

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers[self.header] = self.api_key
        return request


class OAuth2ClientCredentials(AuthBase):
    """A bearer token from an OAuth2 client-credentials grant, cached and refreshed before expiry.

    `token_client` is a client without auth on the token endpoint's host: its errors name
    the token route and the credential's variables. The grant is sent as JSON (what Auth0
    takes); `extra_grant` adds fields such as `audience`. A token is reused until
    `min(60 s, lifetime / 10)` before its `expires_in` ends.
    """

    def __init__(
        self, token_client: ProcessorClient, token_path: str, client_id: str, client_secret: str,
        extra_grant: Mapping[str, str] | None = None, clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.token_client = token_client
        self.token_path = token_path
        self._grant = {"grant_type": "client_credentials", "client_id": client_id,
                       "client_secret": client_secret, **(extra_grant or {})}
        self._clock = clock
        self._token: str | None = None
        self._expires_at = 0.0  # on `clock`
        self._lock = threading.Lock()

    def token(self, stale: str | None = None) -> str:
        """The cached token; a new one when it is about to expire or when `stale` was refused."""
        with self._lock:
            if self._token is not None and self._token != stale and self._clock() < self._expires_at:
                return self._token
            document = self.token_client.json_object("POST", self.token_path, json=self._grant)
            token = document.get("access_token")
            if not isinstance(token, str) or not token:
                raise PermanentError(self.token_client.system,
                                     f"no access_token in the answer from POST {self.token_path}")
            expires_in = document.get("expires_in")
            lifetime_s = (float(expires_in) if isinstance(expires_in, int | float)
                          else DEFAULT_TOKEN_LIFETIME_S)
            margin_s = min(TOKEN_MARGIN_S, lifetime_s / 10)
            self._token = token
            self._expires_at = self._clock() + max(0.0, lifetime_s - margin_s)
            return token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        token = self.token()
        request.headers["Authorization"] = f"Bearer {token}"
        request.hooks["response"].append(partial(_resend_once_if_refused, self.token, token))
        return request


def _resend_once_if_refused(fresh_token: Callable[[str], str], token: str, response: requests.Response,
                            **send_kwargs: Any) -> requests.Response:
    """Expired or revoked before we thought: one fresh token, one more try (as requests' digest auth)."""
    if response.status_code != 401 or response.connection is None:
        return response
    fresh = fresh_token(token)
    response.content  # noqa: B018  (read the body so the connection can be reused)
    response.close()
    retry = response.request.copy()
    retry.headers["Authorization"] = f"Bearer {fresh}"
    again: requests.Response = response.connection.send(retry, **send_kwargs)
    again.history.append(response)
    again.request = retry
    return again


class GoogleServiceAccountAuth(AuthBase):
    """A Google OAuth2 access token minted from a service account (JWT bearer grant, RFC 7523).

    `google.oauth2.service_account.Credentials` signs the assertion with the account's key
    and trades it at `token_uri` (the key file's own unless given); the token is refreshed
    before it expires (google-auth's margin) and, once, when the API answers 401. The key
    file is named by the environment variable `key_file_env`, read on first use: a missing
    or unreadable file, or a refused grant, is an `AuthError` naming that variable.
    """

    def __init__(self, system: str, key_file_env: str, scopes: Sequence[str], *,
                 token_uri: str | None = None, timeout_s: float = 10.0) -> None:
        self.system = system
        self.key_file_env = key_file_env
        self.key_file = require_secret(key_file_env, system)
        self.scopes = list(scopes)
        self.token_uri = token_uri
        self._session = requests.Session()
        self._transport = google_requests.Request(self._session)
        self._timeout_s = timeout_s
        self._credentials: service_account.Credentials | None = None
        self._lock = threading.Lock()

    def _refused(self, what: str) -> AuthError:
        return AuthError(self.system, f"{what} (service-account key file named by {self.key_file_env})")

    def _load(self) -> service_account.Credentials:
        if self._credentials is None:
            try:
                with open(self.key_file, encoding="utf-8") as file:
                    info = json.load(file)
                if self.token_uri:
                    info["token_uri"] = self.token_uri
                self._credentials = service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
                    info, scopes=self.scopes)
            except (OSError, ValueError, KeyError, TypeError) as exc:
                problem = type(exc).__name__
                raise self._refused(f"cannot use the service-account key file: {problem}") from None
        return self._credentials

    def _post(self, **kwargs: Any) -> Any:
        return self._transport(timeout=self._timeout_s, **kwargs)

    def token(self, stale: str | None = None) -> str:
        """A valid access token; a fresh one when the cached one expires soon or was `stale`."""
        with self._lock:
            credentials = self._load()
            if not credentials.valid or credentials.token == stale:
                try:
                    credentials.refresh(self._post)  # type: ignore[no-untyped-call]
                except google_exceptions.RefreshError as exc:
                    if getattr(exc, "retryable", False):
                        raise RetryableError(self.system, "token endpoint unavailable", None) from None
                    raise self._refused("the token endpoint refused the service account's grant") from None
                except google_exceptions.TransportError:
                    raise RetryableError(self.system, "token endpoint unreachable", None) from None
            return str(credentials.token)

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        token = self.token()
        request.headers["Authorization"] = f"Bearer {token}"
        request.hooks["response"].append(partial(_resend_once_if_refused, self.token, token))
        return request

    def close(self) -> None:
        self._session.close()
