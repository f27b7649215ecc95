"""Mailchimp Marketing API 3.0: find the lists holding the address, delete the member permanently in each.

`GET /3.0/search-members?query=<email>` gives `exact_matches.members[]` with their
`list_id`; then `POST /3.0/lists/{list_id}/members/{subscriber_hash}/actions/delete-permanent`
(subscriber_hash = md5 of the lower-cased address) answers 204. Only a permanent
delete erases: `DELETE .../members/{hash}` merely archives. 404 (unknown member)
counts as already gone. HTTP Basic with any user name and the API key; the data
centre is the key's suffix (`...-us14`) unless `base_url` is set. A 429 is the
concurrency cap (10 connections) and carries no wait hint: the runtime backs off.
At exceptionally high volumes the throttle is a bare 403 without a JSON body; real
auth failures (401, 403) carry an `application/problem+json` body, so only those are
auth errors (`Quirks.bare_403_is_throttle`).
"""

from __future__ import annotations

import hashlib
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from connectors.access import AccessReport
from connectors.auth import HttpBasicAuth
from connectors.base import (
    ConfigError,
    EraseResult,
    TaskContext,
    identities_of,
    require_secret,
)
from connectors.client import ProcessorClient
from connectors.http import Quirks
from schemas import Evidence, ResidualData, SubjectIdentities

SEARCH = "/3.0/search-members"
# Mailchimp: delete-permanent "will make it impossible to re-import the list member".
FORGOTTEN = "a record that the address was permanently deleted, which blocks its re-import"
DELETE_PERMANENT = "/3.0/lists/{list_id}/members/{subscriber_hash}/actions/delete-permanent"
PING = "/3.0/ping"


def subscriber_hash(email: str) -> str:
    return hashlib.md5(email.lower().encode()).hexdigest()  # Mailchimp's id, not a security use


class MailchimpSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str | None = Field(default=None, description="e.g. https://us14.api.mailchimp.com; "
                                                           "derived from the key's data centre when unset")
    api_key_env: str = "MAILCHIMP_API_KEY"
    timeout_s: float = Field(default=10.0, gt=0)


class MailchimpConnector:
    def __init__(self, system: str, settings: MailchimpSettings) -> None:
        self.system = system
        self.settings = settings
        key = require_secret(settings.api_key_env, system)
        if settings.base_url:
            base_url = settings.base_url
        else:
            _, _, dc = key.rpartition("-")
            if not key.count("-") or not dc.isalnum():
                raise ConfigError(f"system {system!r}: the key in {settings.api_key_env} has no data-centre "
                                  "suffix (like -us14): set base_url")
            base_url = f"https://{dc}.api.mailchimp.com"
        self._client = ProcessorClient(system, base_url, auth=HttpBasicAuth("erasure", key),
                                       timeout_s=settings.timeout_s, secret_env=settings.api_key_env,
                                       quirks=Quirks(bare_403_is_throttle=True))
        self._base_url = self._client.base_url

    def _lists_holding(self, email: str) -> list[str]:
        document: Any = self._client.json("GET", SEARCH, params={"query": email})
        members = ((document or {}).get("exact_matches") or {}).get("members") or []
        lists: list[str] = []
        for member in members:
            if not isinstance(member, dict):
                continue
            address = str(member.get("email_address", ""))
            list_id = member.get("list_id")
            # exact_matches only, and only this address: never someone whose address merely contains it
            if address.lower() == email.lower() and isinstance(list_id, str) and list_id not in lists:
                lists.append(list_id)
        return lists

    def _delete_permanent(self, list_id: str, email: str) -> int:
        response = self._client.request(
            "POST", DELETE_PERMANENT, {"list_id": list_id, "subscriber_hash": subscriber_hash(email)},
            return_statuses=(404,))
        return response.status_code

    def erase(self, subject: SubjectIdentities, context: TaskContext) -> EraseResult:
        emails = list(dict.fromkeys(e.strip() for e in identities_of(subject, "email") if e.strip()))
        erased: list[str] = []
        last_status: int | None = None
        for email in emails:
            for list_id in self._lists_holding(email):
                last_status = self._delete_permanent(list_id, email)
                if last_status != 404:
                    erased.append(list_id)
        if not erased:
            return EraseResult(status="not_found",
                               evidence=Evidence(http_status=last_status, records_affected=0))
        # delete-permanent answered: done; Mailchimp then refuses to re-import the member.
        evidence = Evidence(http_status=last_status, records_affected=len(erased),
                            reference=("lists " + ", ".join(dict.fromkeys(erased)))[:200],
                            assurance="confirmed", residual=[ResidualData(what=FORGOTTEN)])
        return EraseResult(status="erased", evidence=evidence)

    def check(self) -> AccessReport:
        """`GET /3.0/ping` on the key's data centre: a key it accepts may use the account's audiences."""
        self._client.request("GET", PING)
        return AccessReport(reachable=True, authenticated=True, credential_env=self.settings.api_key_env,
                            notes="GET /3.0/ping answered; Mailchimp API keys carry no scopes (a valid, "
                                  "enabled key may delete members)")

    def close(self) -> None:
        self._client.close()
