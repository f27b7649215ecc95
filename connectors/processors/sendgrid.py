"""SendGrid Marketing Campaigns contacts: lookup, asynchronous delete job, polling.

1. `POST /v3/marketing/contacts/search/emails` {"emails": [...]} maps the person's
   e-mails to contact ids (`result.<email>.contact.id`); 404 when none matches, which
   is `not_found` (nothing to delete; also what a repeat gives once the job ended).
2. `DELETE /v3/marketing/contacts?ids=<id,id>` answers 202 {"job_id"}: the result is
   `pending` with the job id as `job_ref`, polled again after `poll_after_s`.
3. When the runtime re-delivers the task with `job_ref`, `GET
   /v3/marketing/contacts/imports/{job_id}` tells `pending` (still pending),
   `completed` (erased and confirmed, the job id kept as evidence), `failed` (a
   permanent error naming the job id, never the person: its `errors_url` is not
   copied because the error file it points to may list the contacts) or `errored`,
   which SendGrid defines as "finished with some errors": a partial outcome. The
   person's e-mails are then looked up again: when none of their contacts is left
   the erasure is `erased` (confirmed by that lookup); otherwise it fails, saying how
   many were deleted and how many are still there, and a retry (an officer's) submits
   what is left as a new job. Never `erased` while a contact remains.

Bearer API key. Every response carries X-RateLimit-Limit/Remaining/Reset (the reset
is epoch seconds on the rate-limits page, seconds left in the erasure spec: `connectors.http`
reads both); a 429 has no Retry-After, so `connectors.http` waits until the reset.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from connectors.access import AccessReport, compared
from connectors.auth import BearerTokenAuth
from connectors.base import (
    EraseResult,
    PermanentError,
    TaskContext,
    identities_of,
    require_secret,
)
from connectors.client import ProcessorClient
from connectors.http import json_answer
from schemas import Evidence, ResidualData, SubjectIdentities

SEARCH = "/v3/marketing/contacts/search/emails"
SEARCH_ROUTE = f"POST {SEARCH}"
CONTACTS = "/v3/marketing/contacts"
DELETE_ROUTE = "DELETE /v3/marketing/contacts?ids={ids}"
JOB = "/v3/marketing/contacts/imports/{job_id}"
JOB_ROUTE = f"GET {JOB}"
PENDING_STATUSES = frozenset({"pending"})
PARTIAL = "errored"
SCOPES = "/v3/scopes"
# The Marketing Campaigns scopes (SendGrid's teammate-permissions page, "Marketing Campaigns"): the
# contact search reads, the delete job deletes; SendGrid does not say which scope each contact call needs.
NEEDED_SCOPES = ("marketing.read", "marketing_campaigns.read", "marketing_campaigns.delete")
# Contacts only: e-mail activity and logs are SendGrid's separate recipient-data erasure.
ACTIVITY = "e-mail activity and logs naming the address (outside Marketing contacts)"


class SendgridSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str = "https://api.sendgrid.com"
    api_key_env: str = "SENDGRID_API_KEY"
    timeout_s: float = Field(default=10.0, gt=0)
    poll_after_s: float = Field(default=60.0, gt=0, description="Wait before polling a delete job again")


class SendgridConnector:
    def __init__(self, system: str, settings: SendgridSettings) -> None:
        self.system = system
        self.settings = settings
        api_key = require_secret(settings.api_key_env, system)
        self._client = ProcessorClient(system, settings.base_url, auth=BearerTokenAuth(api_key),
                                       timeout_s=settings.timeout_s, secret_env=settings.api_key_env)

    def erase(self, subject: SubjectIdentities, context: TaskContext) -> EraseResult:
        emails = identities_of(subject, "email")
        if context.job_ref:
            return self._poll(context.job_ref, emails)
        if not emails:
            return EraseResult(status="not_found", evidence=Evidence(records_affected=0))
        ids = self._lookup(emails)
        if not ids:
            return EraseResult(status="not_found", evidence=Evidence(http_status=404, records_affected=0))
        return self._delete(ids)

    def _lookup(self, emails: list[str]) -> list[str]:
        response = self._client.request("POST", SEARCH, json={"emails": emails}, return_statuses=(404,))
        if response.status_code == 404:
            return []
        body = json_answer(response, self.system, SEARCH_ROUTE)
        result = body.get("result") if isinstance(body, dict) else None
        if not isinstance(result, dict):
            raise PermanentError(self.system, f"no `result` object in the answer from {SEARCH_ROUTE}")
        ids: list[str] = []
        for entry in result.values():
            contact = entry.get("contact") if isinstance(entry, dict) else None
            contact_id = contact.get("id") if isinstance(contact, dict) else None
            if contact_id and str(contact_id) not in ids:
                ids.append(str(contact_id))
        return ids

    def _delete(self, ids: list[str]) -> EraseResult:
        response = self._client.request("DELETE", CONTACTS, route=DELETE_ROUTE, params={"ids": ",".join(ids)})
        body = json_answer(response, self.system, DELETE_ROUTE)
        job_id = body.get("job_id") if isinstance(body, dict) else None
        if response.status_code != 202 or not job_id:
            raise PermanentError(self.system,
                                 f"HTTP {response.status_code} without a job_id from {DELETE_ROUTE}")
        return EraseResult(status="pending", job_ref=str(job_id), poll_after_s=self.settings.poll_after_s,
                           evidence=Evidence(reference=str(job_id)[:200], http_status=202,
                                             records_affected=len(ids)))

    def _poll(self, job_id: str, emails: list[str]) -> EraseResult:
        response = self._client.request("GET", JOB, {"job_id": job_id})
        body = json_answer(response, self.system, JOB_ROUTE)
        if not isinstance(body, dict):
            raise PermanentError(self.system, f"no job object in the answer from {JOB_ROUTE}")
        job_type = body.get("job_type")
        if job_type is not None and job_type != "delete":
            raise PermanentError(self.system, f"job {job_id} is a {job_type!s:.20} job, not a delete job")
        status = str(body.get("status", ""))
        reference = str(job_id)[:200]
        if status in PENDING_STATUSES:
            return EraseResult(status="pending", job_ref=job_id, poll_after_s=self.settings.poll_after_s,
                               evidence=Evidence(reference=reference, http_status=response.status_code))
        if status == "failed":
            raise PermanentError(self.system, f"delete job {job_id} ended failed; its errors_url "
                                              f"({JOB_ROUTE}) lists what was not deleted")
        if status not in ("completed", PARTIAL):
            raise PermanentError(self.system, f"delete job {job_id} has unknown status {status!r:.30}")
        results = body.get("results") if isinstance(body.get("results"), dict) else {}
        deleted = results.get("deleted_count") if isinstance(results, dict) else None
        deleted = deleted if isinstance(deleted, int) and deleted >= 0 else None
        if status == PARTIAL:
            left = len(self._lookup(emails)) if emails else 0
            if left:
                raise PermanentError(self.system, (
                    f"delete job {job_id} ended errored (finished with some errors): {deleted} deleted, "
                    f"{left} of the person's contact(s) still present (its errors_url lists why); "
                    "retry to submit them again"))
        # completed, or errored with nothing of the person left: confirmed either way.
        if status == PARTIAL:
            reference = f"{reference} (errored; lookup finds none left)"[:200]
        return EraseResult(status="erased", evidence=Evidence(
            residual=[ResidualData(what=ACTIVITY)], reference=reference,
            http_status=response.status_code, records_affected=deleted, assurance="confirmed"))

    def check(self) -> AccessReport:
        """`GET /v3/scopes` lists the key's scopes: compared with those the erasure calls need."""
        body = json_answer(self._client.request("GET", SCOPES), self.system, f"GET {SCOPES}")
        scopes = body.get("scopes") if isinstance(body, dict) else None
        if not isinstance(scopes, list):
            raise PermanentError(self.system, f"no `scopes` list in the answer from GET {SCOPES}")
        return compared(NEEDED_SCOPES, [str(s) for s in scopes], credential_env=self.settings.api_key_env,
                        notes=f"GET {SCOPES} listed the key's {len(scopes)} scope(s)")

    def close(self) -> None:
        self._client.close()
