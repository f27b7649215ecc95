"""Auth0 Management API: look the users up by e-mail, then DELETE /api/v2/users/{user_id}.

A Management API token comes from `POST /oauth/token` (client credentials, through
`connectors.auth.OAuth2ClientCredentials`); it is cached until shortly before it expires and
fetched again, once, when the API answers 401. The
delete answers 204 even for a user that does not exist ("by design"), so not_found comes
from `GET /api/v2/users-by-email` finding no one, never from the delete. The lookup matches
the address case-sensitively: it is asked as given and lowercased. 429 carries
`x-ratelimit-reset` (unix time), which connectors.http turns into the wait.

The Management API's audience is the tenant's canonical domain
(`https://{tenant}.{region}.auth0.com/api/v2/`) even when the calls go to a custom domain:
`canonical_domain` names it; a `base_url` on `*.auth0.com` is its own canonical domain, and a
custom domain without `canonical_domain` (or an explicit `audience`) is a settings error.

A retry after a delete whose answer was lost still reports `erased`: the ids sent a delete
are remembered per request until the request's erasure ends.
"""

from __future__ import annotations

import base64
import json
import threading
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, model_validator

from connectors.access import AccessReport, compared
from connectors.auth import OAuth2ClientCredentials
from connectors.base import (
    EraseResult,
    PermanentError,
    TaskContext,
    identities_of,
    require_secret,
)
from connectors.client import ProcessorClient
from connectors.http import json_object
from schemas import Evidence, SubjectIdentities

TOKEN = "/oauth/token"
LOOKUP = "/api/v2/users-by-email"
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")  # a development fake stands for the tenant itself
USER = "/api/v2/users/{user_id}"
NEEDED_SCOPES = ("read:users", "delete:users")  # the lookup, the erasure


class Auth0Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str = Field(pattern=r"^https?://",
                          description="https://{tenant}.auth0.com (or a custom domain)")
    client_id_env: str = "AUTH0_CLIENT_ID"
    client_secret_env: str = "AUTH0_CLIENT_SECRET"
    canonical_domain: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$",
        description="{tenant}.{region}.auth0.com, when base_url is a custom domain")
    audience: str | None = Field(default=None, description="Default: https://{canonical_domain}/api/v2/")
    timeout_s: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _audience_known(self) -> Auth0Settings:
        host = (urlsplit(self.base_url).hostname or "").lower()
        canonical = host.endswith(".auth0.com") or host in LOCAL_HOSTS
        if not canonical and self.canonical_domain is None and self.audience is None:
            raise ValueError("base_url is a custom domain: set canonical_domain to the tenant's "
                             "{tenant}.{region}.auth0.com, the Management API's audience")
        return self

    def management_audience(self) -> str:
        if self.audience:
            return self.audience
        if self.canonical_domain:
            return f"https://{self.canonical_domain.lower()}/api/v2/"
        return f"{self.base_url.rstrip('/')}/api/v2/"


class Auth0Connector:
    def __init__(self, system: str, settings: Auth0Settings) -> None:
        self.system = system
        self.settings = settings
        base_url = settings.base_url.rstrip("/")
        self.audience = settings.management_audience()
        credential_env = f"{settings.client_id_env}, {settings.client_secret_env}"
        self._credential_env = credential_env
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
        # The users were found by the lookup and DELETE answered 204: confirmed.
        return EraseResult(status="erased", evidence=Evidence(
            http_status=last_status, records_affected=len(ids), reference=", ".join(ids)[:200],
            assurance="confirmed"))

    def _forget(self, request_id: str) -> None:
        with self._sent_lock:
            self._sent.pop(request_id, None)

    def check(self) -> AccessReport:
        """A fresh client-credentials token: its `scope` (the answer's, else the JWT's claim) must
        hold read:users and delete:users. A 403 is the application not authorized for the API."""
        grant = {"grant_type": "client_credentials", "audience": self.audience,
                 "client_id": require_secret(self.settings.client_id_env, self.system),
                 "client_secret": require_secret(self.settings.client_secret_env, self.system)}
        response = self._token_client.request("POST", TOKEN, json=grant, return_statuses=(403,))
        document = json_object(response, self.system, f"POST {TOKEN}")
        if response.status_code == 403:
            reason = str(document.get("error_description") or document.get("error") or "access denied")
            return AccessReport(reachable=True, authenticated=True, scopes_needed=list(NEEDED_SCOPES),
                                missing=list(NEEDED_SCOPES), credential_env=self._credential_env,
                                notes=f"POST {TOKEN} answered 403 ({reason[:120]}): authorize the "
                                      f"application for the Management API ({self.audience}) with "
                                      "read:users and delete:users")
        scope = document.get("scope")
        if not isinstance(scope, str):
            scope = _jwt_claim(str(document.get("access_token") or ""), "scope")
        if not isinstance(scope, str):
            return AccessReport(reachable=True, authenticated=True, scopes_needed=list(NEEDED_SCOPES),
                                unverified=list(NEEDED_SCOPES), credential_env=self._credential_env,
                                notes="token obtained, but it names no scope")
        return compared(NEEDED_SCOPES, scope.split(), credential_env=self._credential_env,
                        notes="the Management API token's scope")

    def close(self) -> None:
        self._client.close()
        self._token_client.close()


def _jwt_claim(token: str, claim: str) -> Any:
    """A claim of a JWT's payload, read without verifying it (only to say what it grants), or None."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, UnicodeDecodeError):
        return None
    return payload.get(claim) if isinstance(payload, dict) else None
