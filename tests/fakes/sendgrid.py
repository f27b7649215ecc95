"""A fake SendGrid Marketing Campaigns contacts API, asynchronous delete jobs included.

`Authorization: Bearer <key>` (401 `authorization required` otherwise).
`POST /v3/marketing/contacts/search/emails` {"emails"} answers 200
{"result": {email: {"contact": {...}} | {"error": "..."}}}, or 404 when no e-mail
matches, 400 beyond 100 e-mails. `DELETE /v3/marketing/contacts?ids=a,b` (one `ids`,
comma-separated: a repeated `ids` is a 400) answers 202 {"job_id"}; the contacts stay until
the job completes. `GET /v3/marketing/contacts/imports/{id}`
gives the job: `pending` until `polls_to_complete` polls have been made (None:
only `finish_jobs()` ends it), then `completed` with `results.deleted_count`, or
`errored` with `results.errors_url` when `fail_next_job()` was called. Contacts in
`undeletable` are left by any job, which then ends `errored` ("finished with some errors")
when it deleted others, `failed` when it deleted none. Every
response has X-RateLimit-Limit/Remaining/Reset; 429 body
{"errors":[{"field":null,"message":"too many requests"}]} with no Retry-After.

UNCONFIRMED, so a constructor switch: `reset_header` says what X-RateLimit-Reset holds,
"epoch" (default: the window's end in Unix seconds, as the rate-limits page says) or
"seconds" (the seconds left in the window, as the recipient-erasure spec says).

Controls besides the shared ones: POST /__fake__/finish_jobs, /__fake__/fail_next_job
{"status": "errored"|"failed"}.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from pipeline.devstack.fake_server import FakeProcessor, Fault, Reply, TokenBucket

MAX_SEARCH_EMAILS = 100
TOO_MANY = {"errors": [{"field": None, "message": "too many requests"}]}


def errors(message: str, field_name: str | None = None) -> dict[str, Any]:
    return {"errors": [{"field": field_name, "message": message}]}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Job:
    id: str
    contact_ids: list[str]
    status: str = "pending"
    polls: int = 0
    ends_as: str = "completed"
    deleted_count: int = 0
    started_at: str = field(default_factory=_now)
    finished_at: str | None = None
    errored_count: int | None = None


class FakeSendgrid(FakeProcessor):
    name = "sendgrid"

    def __init__(self, api_keys: set[str], limit_per_window: int = 1000, window_s: float = 1.0,
                 polls_to_complete: int | None = 2,
                 reset_header: Literal["epoch", "seconds"] = "epoch") -> None:
        super().__init__()
        self.reset_header = reset_header
        self.api_keys = set(api_keys)
        self.bucket = TokenBucket(limit_per_window, window_s)
        self.polls_to_complete = polls_to_complete
        self.contacts: dict[str, dict[str, Any]] = {}
        self.jobs: dict[str, Job] = {}
        self._next_job_ends_as: list[str] = []
        # Contacts a delete job cannot delete: the job deletes the others and ends `errored`
        # ("finished with some errors"), or `failed` when it deleted none.
        self.undeletable: set[str] = set()
        self._lock = threading.RLock()

    # -- test and demo helpers ---------------------------------------------
    def add_contact(self, email: str) -> str:
        contact_id = str(uuid.uuid4())
        with self._lock:
            self.contacts[contact_id] = {"id": contact_id, "email": email.lower(), "first_name": None,
                                         "created_at": _now(), "updated_at": _now(), "list_ids": [],
                                         "segment_ids": []}
        return contact_id

    def has_contact(self, email: str) -> bool:
        with self._lock:
            return any(c["email"] == email.lower() for c in self.contacts.values())

    def fail_next_job(self, status: str = "errored") -> None:
        """The next delete job ends `errored` (or `failed`) and deletes nothing."""
        if status not in ("errored", "failed"):
            raise ValueError("a SendGrid job fails as errored or failed")
        with self._lock:
            self._next_job_ends_as.append(status)

    def finish_jobs(self) -> None:
        with self._lock:
            for job in self.jobs.values():
                if job.status == "pending":
                    self._end(job)

    def _end(self, job: Job) -> None:
        job.status = job.ends_as
        job.finished_at = _now()
        if job.ends_as == "completed":
            for contact_id in job.contact_ids:
                if contact_id not in self.undeletable and self.contacts.pop(contact_id, None) is not None:
                    job.deleted_count += 1
            stuck = [c for c in job.contact_ids if c in self.undeletable]
            if stuck:
                job.status = "errored" if job.deleted_count else "failed"
                job.errored_count = len(stuck)

    # -- protocol ----------------------------------------------------------
    def rate_headers(self, remaining: int, reset_s: float) -> dict[str, str]:
        return {"X-RateLimit-Limit": str(self.bucket.limit), "X-RateLimit-Remaining": str(remaining),
                "X-RateLimit-Reset": str(math.ceil(reset_s) if self.reset_header == "seconds"
                                         else math.ceil(time.time() + reset_s))}

    def fault_reply(self, status: int, reset_s: float) -> Fault:
        if status == 429:
            return Fault(429, TOO_MANY, self.rate_headers(0, reset_s))
        return Fault(status, errors("internal server error"), {})

    def control(self, action: str, body: Any) -> Reply:
        if action == "finish_jobs":
            self.finish_jobs()
            return Reply(204)
        if action == "fail_next_job":
            self.fail_next_job(str(body.get("status", "errored")))
            return Reply(204)
        return super().control(action, body)

    def handle(self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str],
               body: Any) -> Reply:
        auth = headers.get("authorization", "")
        if not auth.startswith("Bearer ") or auth.removeprefix("Bearer ") not in self.api_keys:
            return Reply(401, errors("authorization required"))
        allowed, remaining, reset_s = self.bucket.take()
        rate = self.rate_headers(remaining, reset_s)
        if not allowed:
            return Reply(429, TOO_MANY, rate)
        with self._lock:
            reply = access_reply(self, method, path, headers)  # systems check: see the block at the end
            if reply is None:
                reply = self._route(method, path, query, body)
        reply.headers = {**rate, **(reply.headers or {})}
        return reply

    def _route(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> Reply:
        if method == "POST" and path == "/v3/marketing/contacts/search/emails":
            emails = (body or {}).get("emails")
            if not isinstance(emails, list) or not emails:
                return Reply(400, errors("emails is required", "emails"))
            if len(emails) > MAX_SEARCH_EMAILS:  # "retrieve up to 100 contacts" (ListContactByEmail)
                return Reply(400, errors(f"at most {MAX_SEARCH_EMAILS} emails", "emails"))
            result: dict[str, Any] = {}
            found = False
            for email in emails:
                contact = next((c for c in self.contacts.values() if c["email"] == str(email).lower()), None)
                if contact is None:
                    result[email] = {"error": "contact not found"}
                else:
                    result[email] = {"contact": dict(contact)}
                    found = True
            if not found:
                return Reply(404, errors("No contacts found"))
            return Reply(200, {"result": result})
        if method == "DELETE" and path == "/v3/marketing/contacts":
            if query.get("delete_all_contacts"):
                return Reply(400, errors("the fake refuses delete_all_contacts", "delete_all_contacts"))
            if len(query.get("ids", [])) > 1:  # one `ids` parameter, "a comma-separated list" (DeleteContact)
                return Reply(400, errors("ids must be one comma-separated list", "ids"))
            ids = [i for i in ",".join(query.get("ids", [])).split(",") if i]
            if not ids:
                return Reply(400, errors("ids or delete_all_contacts is required", "ids"))
            job = Job(id=str(uuid.uuid4()), contact_ids=ids)
            if self._next_job_ends_as:
                job.ends_as = self._next_job_ends_as.pop(0)
            self.jobs[job.id] = job
            return Reply(202, {"job_id": job.id})
        if method == "GET" and path.startswith("/v3/marketing/contacts/imports/"):
            job_found = self.jobs.get(path.removeprefix("/v3/marketing/contacts/imports/"))
            if job_found is None:
                return Reply(404, errors("job not found"))
            return Reply(200, self._poll(job_found))
        return Reply(404, errors("resource not found"))

    def _poll(self, job: Job) -> dict[str, Any]:
        if job.status == "pending":
            job.polls += 1
            if self.polls_to_complete is not None and job.polls >= self.polls_to_complete:
                self._end(job)
        failed = job.status in ("errored", "failed")
        return {
            "id": job.id, "status": job.status, "job_type": "delete",
            "results": {"requested_count": len(job.contact_ids), "created_count": 0, "updated_count": 0,
                        "deleted_count": job.deleted_count,
                        "errored_count": job.errored_count if job.errored_count is not None
                        else len(job.contact_ids) if failed else 0,
                        **({"errors_url": f"https://sendgrid.example/errors/{job.id}.csv"}
                           if failed else {})},
            "started_at": job.started_at, "finished_at": job.finished_at,
        }


# == Systems check (erasure systems check): GET /v3/scopes ============================================
# Additive block. GET /v3/scopes answers {"scopes": [...]}, every scope of the key that asks
# (twilio/sendgrid-oai tsg_scopes_v3.json, ListScope). `grant_scopes` is the switch; a key not
# given one holds the Marketing Campaigns scopes (teammate-permissions page) and mail.send.

MARKETING_SCOPES = ["mail.send", "marketing.read", "marketing_campaigns.create", "marketing_campaigns.delete",
                    "marketing_campaigns.read", "marketing_campaigns.update"]


def grant_scopes(fake: FakeSendgrid, api_key: str, scopes: list[str]) -> None:
    """The key `api_key` now holds exactly `scopes` (GET /v3/scopes lists them)."""
    fake.__dict__.setdefault("key_scopes", {})[api_key] = list(scopes)


def access_reply(fake: FakeSendgrid, method: str, path: str, headers: dict[str, str]) -> Reply | None:
    if method != "GET" or path != "/v3/scopes":
        return None
    key = headers.get("authorization", "").removeprefix("Bearer ")
    return Reply(200, {"scopes": list(fake.__dict__.get("key_scopes", {}).get(key, MARKETING_SCOPES))})
