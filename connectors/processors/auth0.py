"""Auth0 Management API: look the users up by e-mail, then DELETE /api/v2/users/{user_id}.

A Management API token comes from `POST /oauth/token` (client credentials, through
`connectors.auth.OAuth2ClientCredentials`); it is cached until shortly before it expires and
fetched again, once, when the API answers 401. The
delete answers 204 even for a user that does not exist ("by design"), so not_found comes
from `GET /api/v2/users-by-email` finding no one, never from the delete. The lookup matches
the address case-sensitively: it is asked as given and lowercased. 429 carries
`x-ratelimit-reset` (unix time), which connectors.http turns into the wait.

A retry after a delete whose answer was lost still reports `erased`: the ids sent a delete
are remembered per request until the request's erasure ends.
"""

from __future__ import annotations

import threading

from pydantic import BaseModel, ConfigDict, Field

from connectors.auth import OAuth2ClientCredentials
from connectors.base import (
    EraseResult,
    PermanentError,
    TaskContext,
    identities_of,
    require_secret,
)
from connectors.client import ProcessorClient
from schemas import Evidence, SubjectIdentities

TOKEN = "/oauth/token"
LOOKUP = "/api/v2/users-by-email"
USER = "/api/v2/users/{user_id}"


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
        base_url = settings.base_url.rstrip("/")
        self.audience = settings.audience or f"{base_url}/api/v2/"
        credential_env = f"{settings.client_id_env}, {settings.client_secret_env}"
        self._token_client = ProcessorClient(system, base_url, timeout_s=settings.timeout_s,
                                             secret_env=credential_env)
        self._token = OAuth2ClientCredentials(
            self._token_client, TOKEN, client_id=require_secret(settings.client_id_env, system),
            client_secret=require_secret(settings.client_secret_env, system),
            extra_grant={"audience": self.audience})
        self._client = ProcessorClient(system, base_url, auth=self._token, timeout_s=settings.timeout_s,
                                       secret_env=credential_env)
        self._sent: dict[str, set[str]] = {}  # request id -> user ids sent a delete
        self._sent_lock = threading.Lock()

    # -- erasure -----------------------------------------------------------------
    def _find(self, email: str) -> list[str]:
        ids: list[str] = []
        for asked in dict.fromkeys((email, email.lower())):
            document = self._client.json("GET", LOOKUP, params={"email": asked})
            if not isinstance(document, list):
                raise PermanentError(self.system, f"answer from GET {LOOKUP} is not a JSON array")
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
            response = self._client.request("DELETE", USER, {"user_id": user_id})
            last_status = response.status_code
        self._forget(context.request_id)
        return EraseResult(status="erased", evidence=Evidence(
            http_status=last_status, records_affected=len(ids), reference=", ".join(ids)[:200]))

    def _forget(self, request_id: str) -> None:
        with self._sent_lock:
            self._sent.pop(request_id, None)

    def check(self) -> str:
        self._token.token()
        return "Management API token obtained"

    def close(self) -> None:
        self._client.close()
        self._token_client.close()
