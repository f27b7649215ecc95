"""Brevo (ex-Sendinblue): DELETE /v3/contacts/{identifier}, `api-key` header.

204 erased, 404 not found (also what a repeat gives), 429 with only
`x-sib-ratelimit-reset` (relative seconds) to say how long to wait. 405 is Brevo refusing
to delete the address the account itself is registered with: a permanent refusal that says
so (the person's address is the account's login), never retried.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from connectors.access import AccessReport
from connectors.auth import ApiKeyHeaderAuth
from connectors.base import EraseResult, PermanentError, TaskContext, require_secret
from connectors.client import ProcessorClient
from schemas import Evidence, SubjectIdentities

CONTACT = "/v3/contacts/{identifier}"
ROUTE = f"DELETE {CONTACT}"
IDENTIFIER_TYPES: dict[str, Literal["email_id", "phone_id"]] = {
    "email": "email_id",
    "phone": "phone_id",
}


class BrevoSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str = "https://api.brevo.com"
    api_key_env: str = "BREVO_API_KEY"
    timeout_s: float = Field(default=10.0, gt=0)


class BrevoConnector:
    def __init__(self, system: str, settings: BrevoSettings) -> None:
        self.system = system
        self.settings = settings
        api_key = require_secret(settings.api_key_env, system)
        self._client = ProcessorClient(system, settings.base_url, auth=ApiKeyHeaderAuth("api-key", api_key),
                                       timeout_s=settings.timeout_s, secret_env=settings.api_key_env)

    def erase(self, subject: SubjectIdentities, context: TaskContext) -> EraseResult:
        erased = 0
        last_status: int | None = None
        asked = 0
        for identity in subject.identities:
            identifier_type = IDENTIFIER_TYPES.get(identity.identity_type)
            if identifier_type is None:
                continue
            asked += 1
            # The query is part of the template (the same URL requests would build from `params=`,
            # without merging a parameter dict with the session's at every call).
            response = self._client.request("DELETE", f"{CONTACT}?identifierType={identifier_type}",
                                            {"identifier": identity.identity_value}, route=ROUTE,
                                            return_statuses=(404, 405))
            last_status = response.status_code
            if response.status_code == 404:
                continue
            if response.status_code == 405:
                raise PermanentError(self.system, (
                    f"HTTP 405 from {ROUTE}: Brevo refuses to delete the address the Brevo account is "
                    "registered with; change the account's login e-mail at Brevo (or delete the account), "
                    "then retry"))
            if response.status_code != 204:
                raise PermanentError(self.system, f"unexpected HTTP {response.status_code} from {ROUTE}")
            erased += 1
        if asked == 0:
            return EraseResult(status="not_found", evidence=Evidence(records_affected=0))
        if not erased:
            return EraseResult(status="not_found",
                               evidence=Evidence(http_status=last_status, records_affected=0))
        # 204 means the contact is deleted, not queued: confirmed.
        return EraseResult(status="erased", evidence=Evidence(
            http_status=last_status, records_affected=erased, assurance="confirmed"))

    def check(self) -> AccessReport:
        """`GET /v3/account`: a key it accepts is a key of the account, and Brevo keys carry no scopes."""
        self._client.request("GET", "/v3/account")
        return AccessReport(reachable=True, authenticated=True, credential_env=self.settings.api_key_env,
                            notes="GET /v3/account answered; Brevo API keys carry no scopes (a valid key "
                                  "may delete contacts)")

    def close(self) -> None:
        self._client.close()
