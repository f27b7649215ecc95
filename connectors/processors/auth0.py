"""Auth0 Management API: look the users up by e-mail, then DELETE /api/v2/users/{user_id}.

A Management API token comes from `POST /oauth/token` (client credentials); it is cached
until shortly before it expires and fetched again, once, when the API answers 401. The
delete answers 204 even for a user that does not exist ("by design"), so not_found comes
from `GET /api/v2/users-by-email` finding no one, never from the delete. The lookup matches
the address case-sensitively: it is asked as given and lowercased. 429 carries
`x-ratelimit-reset` (unix time), which connectors.http turns into the wait.

A retry after a delete whose answer was lost still reports `erased`: the ids sent a delete
are remembered per request until the request's erasure ends.
"""

from __future__ import annotations

import threading
import time
from typing import Any
from urllib.parse import quote

import requests
from pydantic import BaseModel, ConfigDict, Field

from connectors.base import (
    EraseResult,
    PermanentError,
    TaskContext,
    identities_of,
    require_secret,
)
from connectors.http import classify_response, json_answer, send
from schemas import Evidence, SubjectIdentities

TOKEN = "POST /oauth/token"
LOOKUP = "GET /api/v2/users-by-email"
DELETE = "DELETE /api/v2/users/{user_id}"
TOKEN_MARGIN_S = 60.0


class Auth0Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str = Field(pattern=r"^https?://",
                          description="https://{tenant}.auth0.com (or a custom domain)")
    client_id_env: str = "AUTH0_CLIENT_ID"
    client_secret_env: str = "AUTH0_CLIENT_SECRET"
    audience: str | None = Field(default=None, description="Default: {base_url}/api/v2/")
    timeout_s: float = Field(default=10.0, gt=0)


class Auth0Connector:
    def __init__(self, system: str, settings: Auth0Settings) -> None:
        self.system = system
        self.settings = settings
        self.base_url = settings.base_url.rstrip("/")
        self.audience = settings.audience or f"{self.base_url}/api/v2/"
        self._client_id = require_secret(settings.client_id_env, system)
        self._client_secret = require_secret(settings.client_secret_env, system)
        self._credential_env = f"{settings.client_id_env}, {settings.client_secret_env}"
        self._session = requests.Session()
        self._session.headers.update({"accept": "application/json"})
        self._token: str | None = None
        self._token_expires_at = 0.0  # monotonic
        self._token_lock = threading.Lock()
        self._sent: dict[str, set[str]] = {}  # request id -> user ids sent a delete
        self._sent_lock = threading.Lock()

    # -- token -----------------------------------------------------------------
    def _access_token(self, stale: str | None = None) -> str:
        """The cached token; a new one when it is about to expire or when `stale` was refused."""
        with self._token_lock:
            if self._token is not None and self._token != stale and time.monotonic() < self._token_expires_at:
                return self._token
            response = send(self._session, "POST", f"{self.base_url}/oauth/token", self.system, TOKEN,
                            self.settings.timeout_s,
                            json={"grant_type": "client_credentials", "client_id": self._client_id,
                                  "client_secret": self._client_secret, "audience": self.audience})
            classify_response(response, self.system, TOKEN, self._credential_env)
            document = json_answer(response, self.system, TOKEN)
            token = document.get("access_token") if isinstance(document, dict) else None
            if not isinstance(token, str) or not token:
                raise PermanentError(self.system, f"no access_token in the answer from {TOKEN}")
            expires_in = document.get("expires_in")
            lifetime = float(expires_in) if isinstance(expires_in, int | float) else 3600.0
            self._token = token
            margin = min(TOKEN_MARGIN_S, lifetime / 10)
            self._token_expires_at = time.monotonic() + max(0.0, lifetime - margin)
            return token

    def _api(self, method: str, path: str, route: str, **kwargs: Any) -> requests.Response:
        token = self._access_token()
        response = self._send(method, path, route, token, **kwargs)
        if response.status_code == 401:  # expired or revoked before we thought: one fresh token
            response = self._send(method, path, route, self._access_token(stale=token), **kwargs)
        classify_response(response, self.system, route, self._credential_env)
        return response

    def _send(self, method: str, path: str, route: str, token: str, **kwargs: Any) -> requests.Response:
        return send(self._session, method, self.base_url + path, self.system, route, self.settings.timeout_s,
                    headers={"authorization": f"Bearer {token}"}, **kwargs)

    # -- erasure -----------------------------------------------------------------
    def _find(self, email: str) -> list[str]:
        ids: list[str] = []
        for asked in dict.fromkeys((email, email.lower())):
            response = self._api("GET", "/api/v2/users-by-email", LOOKUP, params={"email": asked})
            document = json_answer(response, self.system, LOOKUP)
            if not isinstance(document, list):
                raise PermanentError(self.system, f"answer from {LOOKUP} is not a JSON array")
            ids.extend(str(u["user_id"]) for u in document if isinstance(u, dict) and u.get("user_id"))
        return ids

    def erase(self, subject: SubjectIdentities, context: TaskContext) -> EraseResult:
        with self._sent_lock:
            sent = self._sent.setdefault(context.request_id, set())
        ids: dict[str, None] = {}
        for email in identities_of(subject, "email"):
            if email.strip():
                ids.update(dict.fromkeys(self._find(email.strip())))
        ids.update(dict.fromkeys(sorted(sent)))  # deleted by an earlier attempt whose answer was lost
        if not ids:
            self._forget(context.request_id)
            return EraseResult(status="not_found", evidence=Evidence(records_affected=0))
        last_status: int | None = None
        for user_id in ids:
            sent.add(user_id)
            response = self._api("DELETE", f"/api/v2/users/{quote(user_id, safe='')}", DELETE)
            last_status = response.status_code
        self._forget(context.request_id)
        return EraseResult(status="erased", evidence=Evidence(
            http_status=last_status, records_affected=len(ids), reference=", ".join(ids)[:200]))

    def _forget(self, request_id: str) -> None:
        with self._sent_lock:
            self._sent.pop(request_id, None)

    def check(self) -> str:
        self._access_token()
        return "Management API token obtained"

    def close(self) -> None:
        self._session.close()
