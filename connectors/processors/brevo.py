"""Brevo (ex-Sendinblue): DELETE /v3/contacts/{identifier}, `api-key` header.

204 erased, 404 not found (also what a repeat gives), 429 with only
`x-sib-ratelimit-reset` (relative seconds) to say how long to wait.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import quote

import requests
from pydantic import BaseModel, ConfigDict, Field

from connectors.base import EraseResult, PermanentError, TaskContext, require_secret
from connectors.http import classify_response, send
from schemas import Evidence, SubjectIdentities

ROUTE = "DELETE /v3/contacts/{identifier}"
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
        self._api_key = require_secret(settings.api_key_env, system)
        self._session = requests.Session()
        self._session.headers.update({"api-key": self._api_key, "accept": "application/json"})

    def erase(self, subject: SubjectIdentities, context: TaskContext) -> EraseResult:
        erased = 0
        last_status: int | None = None
        asked = 0
        for identity in subject.identities:
            identifier_type = IDENTIFIER_TYPES.get(identity.identity_type)
            if identifier_type is None:
                continue
            asked += 1
            url = (f"{self.settings.base_url.rstrip('/')}/v3/contacts/"
                   f"{quote(identity.identity_value, safe='')}")
            response = send(self._session, "DELETE", url, self.system, ROUTE,
                            self.settings.timeout_s, params={"identifierType": identifier_type})
            last_status = response.status_code
            if response.status_code == 404:
                continue
            classify_response(response, self.system, ROUTE, self.settings.api_key_env)
            if response.status_code != 204:
                raise PermanentError(self.system, f"unexpected HTTP {response.status_code} from {ROUTE}")
            erased += 1
        if asked == 0:
            return EraseResult(status="not_found", evidence=Evidence(records_affected=0))
        return EraseResult(
            status="erased" if erased else "not_found",
            evidence=Evidence(http_status=last_status, records_affected=erased),
        )

    def check(self) -> str:
        url = f"{self.settings.base_url.rstrip('/')}/v3/account"
        response = send(self._session, "GET", url, self.system, "GET /v3/account", self.settings.timeout_s)
        classify_response(response, self.system, "GET /v3/account", self.settings.api_key_env)
        return f"HTTP {response.status_code}"

    def close(self) -> None:
        self._session.close()
