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

Batches (`erase_batch`, up to 100 people: the search's documented maximum): the e-mails of
every fresh task go to one search (per 100 e-mails), the contacts found to ONE delete job
(past 100 contact ids, a URL bound of ours, the fewest jobs), and each task is `pending`
with its job id (`not_found` when none of its e-mails matched). Polling reads each distinct
job once per batch; an `errored` job is mapped to its people by one lookup of all their
e-mails: those with a contact left fail, the others are erased. A completed job's
`deleted_count` (the evidence's records) counts the whole job.

Bearer API key. Every response carries X-RateLimit-Limit/Remaining/Reset (the reset
is epoch seconds on the rate-limits page, seconds left in the erasure spec: `connectors.http`
reads both); a 429 has no Retry-After, so `connectors.http` waits until the reset.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import NamedTuple

from pydantic import BaseModel, ConfigDict, Field

from connectors.access import AccessReport, compared
from connectors.auth import BearerTokenAuth
from connectors.base import (
    BatchItem,
    ConnectorError,
    EraseResult,
    PermanentError,
    TaskContext,
    identities_of,
    require_secret,
)
from connectors.client import ProcessorClient
from connectors.http import json_answer
from connectors.processors.bulk import Calls, Outcome, by_job, one, pack, settle
from schemas import Evidence, ResidualData, SubjectIdentities

SEARCH = "/v3/marketing/contacts/search/emails"
SEARCH_ROUTE = f"POST {SEARCH}"
CONTACTS = "/v3/marketing/contacts"
DELETE_ROUTE = "DELETE /v3/marketing/contacts?ids={ids}"
JOB = "/v3/marketing/contacts/imports/{job_id}"
JOB_ROUTE = f"GET {JOB}"
MAX_SEARCH_EMAILS = 100
# Not a SendGrid limit (DeleteContact documents none): 100 contact ids (UUIDs) keep the DELETE's
# query string under 4 KB, well within the 8 KB request lines common HTTP front ends accept.
# A batch's contacts go in one DELETE up to this many, more in the fewest DELETEs (one person's
# ids never split, however many).
MAX_DELETE_IDS = 100
PENDING_STATUSES = frozenset({"pending"})
PARTIAL = "errored"
SCOPES = "/v3/scopes"
# The Marketing Campaigns scopes (SendGrid's teammate-permissions page, "Marketing Campaigns"): the
# contact search reads, the delete job deletes; SendGrid does not say which scope each contact call needs.
NEEDED_SCOPES = ("marketing.read", "marketing_campaigns.read", "marketing_campaigns.delete")
# Contacts only: e-mail activity and logs are SendGrid's separate recipient-data erasure.
ACTIVITY = "e-mail activity and logs naming the address (outside Marketing contacts)"


class Job(NamedTuple):
    status: str
    deleted: int | None  # the job's deleted_count: every contact of the job, shared or not
    http_status: int


def _emails(subject: SubjectIdentities) -> list[str]:
    return identities_of(subject, "email")


class SendgridSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str = "https://api.sendgrid.com"
    api_key_env: str = "SENDGRID_API_KEY"
    timeout_s: float = Field(default=10.0, gt=0)
    poll_after_s: float = Field(default=60.0, gt=0, description="Wait before polling a delete job again")


class SendgridConnector:
    # A batch is as many people as one contact search takes: "up to 100" e-mails (ListContactByEmail,
    # vendor-specs/sendgrid/tsg_mc_contacts_v3.json). DeleteContact documents no maximum of `ids`
    # (see MAX_DELETE_IDS): 100 people with one contact each are one DELETE.
    max_batch = MAX_SEARCH_EMAILS

    def __init__(self, system: str, settings: SendgridSettings) -> None:
        self.system = system
        self.settings = settings
        api_key = require_secret(settings.api_key_env, system)
        self._client = ProcessorClient(system, settings.base_url, auth=BearerTokenAuth(api_key),
                                       timeout_s=settings.timeout_s, secret_env=settings.api_key_env)

    def erase(self, subject: SubjectIdentities, context: TaskContext) -> EraseResult:
        return one(self.erase_batch([BatchItem(subject, context)]))

    def erase_batch(self, items: Sequence[BatchItem]) -> list[EraseResult | ConnectorError]:
        """One GET per distinct job polled, one lookup of every e-mail to look up (per 100), then
        one DELETE of every contact found: each task `pending` with the shared job id."""
        outcomes: list[Outcome | None] = [None] * len(items)
        calls = Calls()
        recheck: dict[int, tuple[str, Job]] = {}  # items of an `errored` job: looked up again
        for job_id, indices in by_job(items).items():
            job = calls.run(partial(self._read_job, job_id))
            for index in indices:
                if isinstance(job, ConnectorError) or job.status != PARTIAL:
                    outcomes[index] = job if isinstance(job, ConnectorError) else self._polled(job_id, job)
                elif _emails(items[index].subject):
                    recheck[index] = (job_id, job)
                else:
                    outcomes[index] = self._partly(job_id, job, 0)
        fresh = [index for index, item in enumerate(items) if not item.context.job_ref]
        for index in fresh:
            if not _emails(items[index].subject):
                outcomes[index] = EraseResult(status="not_found", evidence=Evidence(records_affected=0))
        looked_up = [index for index in [*recheck, *fresh] if outcomes[index] is None]
        emails = list(dict.fromkeys(e.lower() for index in looked_up for e in _emails(items[index].subject)))
        contacts = calls.run(partial(self._lookup, emails)) if emails else {}
        to_delete: dict[int, list[str]] = {}
        for index in looked_up:
            if isinstance(contacts, ConnectorError):
                outcomes[index] = contacts
                continue
            ids = list(dict.fromkeys(contacts[e.lower()] for e in _emails(items[index].subject)
                                     if e.lower() in contacts))
            if index in recheck:
                outcomes[index] = self._partly(*recheck[index], len(ids))
            elif not ids:
                outcomes[index] = EraseResult(status="not_found",
                                              evidence=Evidence(http_status=404, records_affected=0))
            else:
                to_delete[index] = ids
        for group in pack([(index, min(len(ids), MAX_DELETE_IDS)) for index, ids in to_delete.items()],
                          MAX_DELETE_IDS):
            group_ids = list(dict.fromkeys(i for index in group for i in to_delete[index]))
            created = calls.run(partial(self._delete, group_ids))
            for index in group:
                outcomes[index] = created if isinstance(created, ConnectorError) else EraseResult(
                    status="pending", job_ref=created, poll_after_s=self.settings.poll_after_s,
                    evidence=Evidence(reference=created[:200], http_status=202,
                                      records_affected=len(to_delete[index])))
        return settle(self.system, outcomes)

    def _lookup(self, emails: list[str]) -> dict[str, str]:
        """Contact id by lower-cased e-mail (primary or alternate), one search per 100 e-mails."""
        found: dict[str, str] = {}
        for start in range(0, len(emails), MAX_SEARCH_EMAILS):
            chunk = emails[start:start + MAX_SEARCH_EMAILS]
            response = self._client.request("POST", SEARCH, json={"emails": chunk}, return_statuses=(404,))
            if response.status_code == 404:  # none of these matches
                continue
            body = json_answer(response, self.system, SEARCH_ROUTE)
            result = body.get("result") if isinstance(body, dict) else None
            if not isinstance(result, dict):
                raise PermanentError(self.system, f"no `result` object in the answer from {SEARCH_ROUTE}")
            for searched, entry in result.items():
                contact = entry.get("contact") if isinstance(entry, dict) else None
                contact_id = contact.get("id") if isinstance(contact, dict) else None
                if contact_id:  # SendGrid answers in lower case whatever the case searched
                    found[str(searched).lower()] = str(contact_id)
        return found

    def _delete(self, ids: list[str]) -> str:
        """One delete job for these contact ids: its job id."""
        response = self._client.request("DELETE", CONTACTS, route=DELETE_ROUTE, params={"ids": ",".join(ids)})
        body = json_answer(response, self.system, DELETE_ROUTE)
        job_id = body.get("job_id") if isinstance(body, dict) else None
        if response.status_code != 202 or not job_id:
            raise PermanentError(self.system,
                                 f"HTTP {response.status_code} without a job_id from {DELETE_ROUTE}")
        return str(job_id)

    def _read_job(self, job_id: str) -> Job:
        response = self._client.request("GET", JOB, {"job_id": job_id})
        body = json_answer(response, self.system, JOB_ROUTE)
        if not isinstance(body, dict):
            raise PermanentError(self.system, f"no job object in the answer from {JOB_ROUTE}")
        job_type = body.get("job_type")
        if job_type is not None and job_type != "delete":
            raise PermanentError(self.system, f"job {job_id} is a {job_type!s:.20} job, not a delete job")
        results = body.get("results") if isinstance(body.get("results"), dict) else {}
        deleted = results.get("deleted_count") if isinstance(results, dict) else None
        counted = deleted if isinstance(deleted, int) and deleted >= 0 else None
        return Job(str(body.get("status", "")), counted, response.status_code)

    def _polled(self, job_id: str, job: Job) -> Outcome:
        """A job's outcome for every task it serves, `errored` aside (that one is per person)."""
        if job.status in PENDING_STATUSES:
            return EraseResult(status="pending", job_ref=job_id, poll_after_s=self.settings.poll_after_s,
                               evidence=Evidence(reference=str(job_id)[:200], http_status=job.http_status))
        if job.status == "failed":
            return PermanentError(self.system, f"delete job {job_id} ended failed; its errors_url "
                                               f"({JOB_ROUTE}) lists what was not deleted")
        if job.status != "completed":
            return PermanentError(self.system, f"delete job {job_id} has unknown status {job.status!r:.30}")
        return self._erased(job_id, job, str(job_id)[:200])

    def _partly(self, job_id: str, job: Job, left: int) -> Outcome:
        """An `errored` job, for one person: erased when the lookup finds none of their contacts left."""
        if left:
            return PermanentError(self.system, (
                f"delete job {job_id} ended errored (finished with some errors): {job.deleted} deleted, "
                f"{left} of the person's contact(s) still present (its errors_url lists why); "
                "retry to submit them again"))
        return self._erased(job_id, job, f"{job_id} (errored; lookup finds none left)"[:200])

    def _erased(self, job_id: str, job: Job, reference: str) -> EraseResult:
        """Confirmed: the job completed, or the lookup found nothing of the person left."""
        return EraseResult(status="erased", evidence=Evidence(
            residual=[ResidualData(what=ACTIVITY)], reference=reference,
            http_status=job.http_status, records_affected=job.deleted, assurance="confirmed"))

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
