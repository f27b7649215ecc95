"""The person's Zendesk tickets, which survive the user's deletion: deleted for good, or redacted.

`tickets: delete`: each ticket the person requested is soft-deleted (`DELETE
/api/v2/tickets/{id}`, 204), then deleted for good in batches of 100 (`DELETE
/api/v2/deleted_tickets/destroy_many?ids=`, 200 with a `job_status`). The job runs in the
background: the result is `pending` with `zendesk-tickets:jobs=…;tickets=N`, polled through
`GET /api/v2/job_statuses/{id}` (queued, working, failed, completed). Zendesk keeps deleting the
others when one ticket fails and still ends `completed`, so every `results[]` entry is read: a
ticket with `success: false` makes the erasure fail, naming the ticket ids and Zendesk's error
codes, and the user is not deleted (the officer resolves them, then retries).

Both read every page of their listing (cursor pagination, `connectors/processors/zendesk_pages.py`).

`tickets: redact`: every comment the person wrote on those tickets is redacted whole through
`PUT /api/v2/comment_redactions/{comment_id}` (the endpoint that also works on closed and
archived tickets): each text run of the comment's `html_body` goes inside `<redact>` tags.
The tickets themselves remain (subjects, agents' replies), reported as residual data, and so do
the original e-mails behind e-mail comments until Zendesk's background job redacts them.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from connectors.base import EraseResult, PermanentError
from connectors.client import ProcessorClient
from connectors.processors.zendesk_pages import cursor_pages
from schemas import Evidence

TicketMode = Literal["keep", "delete", "redact"]
TICKETS_PREFIX = "zendesk-tickets:"
REQUESTED = "/api/v2/users/{id}/tickets/requested.json"
TICKET = "/api/v2/tickets/{id}.json"
PURGE = "/api/v2/deleted_tickets/destroy_many.json"
PURGE_ROUTE = "DELETE /api/v2/deleted_tickets/destroy_many.json?ids={ids}"
JOB = "/api/v2/job_statuses/{id}.json"
COMMENTS = "/api/v2/tickets/{id}/comments.json"
REDACTION = "/api/v2/comment_redactions/{id}.json"
BATCH = 100
RUNNING = frozenset({"queued", "working"})
REDACTED_CHAR = "\u2587"
_TEXT_RUN = re.compile(r"(^|>)([^<]+)(?=<|$)")
_TOKEN = re.compile(r"^[A-Za-z0-9_.-]{1,40}$")


def redact_all(html: str) -> str:
    """The comment's html_body with every text run inside `<redact>` tags, the markup untouched."""
    return _TEXT_RUN.sub(lambda m: f"{m.group(1)}<redact>{m.group(2)}</redact>"
                         if m.group(2).strip() else m.group(0), html)


def _already_redacted(html: str) -> bool:
    text = re.sub(r"<[^>]+>", "", html)
    return not text.replace(REDACTED_CHAR, "").strip()


class TicketEraser:
    def __init__(self, system: str, client: ProcessorClient, poll_after_s: float) -> None:
        self.system = system
        self._client = client
        self._poll_after_s = poll_after_s

    def requested(self, user_id: int) -> list[int]:
        """Every ticket the user requested, all pages (a ticket missed keeps the person's text)."""
        return [int(t["id"]) for page in cursor_pages(self._client, REQUESTED, {"id": user_id}, "tickets")
                for t in page if t.get("id")]

    # -- delete ------------------------------------------------------------------
    def delete(self, ticket_ids: list[int]) -> EraseResult:
        for ticket_id in ticket_ids:  # 404: soft-deleted by an earlier attempt
            self._client.request("DELETE", TICKET, {"id": ticket_id}, return_statuses=(404,))
        jobs: list[str] = []
        for start in range(0, len(ticket_ids), BATCH):
            ids = ",".join(map(str, ticket_ids[start:start + BATCH]))
            answer = self._client.json_object("DELETE", PURGE, route=PURGE_ROUTE, params={"ids": ids})
            job = answer.get("job_status") if isinstance(answer.get("job_status"), dict) else None
            if not job or not job.get("id"):
                raise PermanentError(self.system, f"no job_status.id in the answer from {PURGE_ROUTE}")
            jobs.append(str(job["id"]))
        return self._pending(jobs, len(ticket_ids))

    def _pending(self, jobs: list[str], tickets: int) -> EraseResult:
        ref = f"{TICKETS_PREFIX}jobs={','.join(jobs)};tickets={tickets}"
        return EraseResult(status="pending", job_ref=ref, poll_after_s=self._poll_after_s,
                           evidence=Evidence(reference=f"permanent deletion of {tickets} ticket(s): "
                                                       f"jobs {', '.join(jobs)}"[:200], http_status=200))

    def check(self, ref: str) -> EraseResult | int:
        """`pending` while a job runs; the number of tickets deleted for good once all are done."""
        try:
            fields = dict(part.split("=", 1) for part in ref.removeprefix(TICKETS_PREFIX).split(";"))
            jobs, tickets = [j for j in fields["jobs"].split(",") if j], int(fields["tickets"])
        except (KeyError, ValueError):
            raise PermanentError(self.system, "unreadable job_ref for the ticket deletion step") from None
        failures: list[str] = []
        for job_id in jobs:
            job = self._client.json_object("GET", JOB, {"id": job_id}).get("job_status")
            if not isinstance(job, dict):
                raise PermanentError(self.system, f"no job_status in the answer from GET {JOB}")
            status = str(job.get("status", ""))
            if status in RUNNING:
                return self._pending(jobs, tickets)
            if status != "completed":
                raise PermanentError(self.system, f"ticket deletion job {job_id} ended {status!r:.20}; the "
                                                  "user was not deleted: retry")
            failures.extend(_failed(job.get("results")))
        if failures:
            raise PermanentError(self.system, (
                f"ticket deletion completed with {len(failures)} of {tickets} ticket(s) not deleted "
                f"({'; '.join(failures[:8])}{' …' if len(failures) > 8 else ''}); "
                "the user was not deleted: resolve those tickets in Zendesk "
                "(soft-deleted ones are scrubbed after 30 days), then retry"))
        return tickets

    # -- redact ------------------------------------------------------------------
    def redact(self, user_id: int, ticket_ids: list[int]) -> int:
        """Redact every comment `user_id` wrote on these tickets; the number of comments redacted."""
        redacted = 0
        for ticket_id in ticket_ids:
            # every page: a comment on a later page redacted is as much the person's as the first
            for comments in cursor_pages(self._client, COMMENTS, {"id": ticket_id}, "comments"):
                for comment in comments:
                    html = str(comment.get("html_body", ""))
                    if not self._theirs(comment, user_id) or _already_redacted(html):
                        continue
                    self._client.request("PUT", REDACTION, {"id": comment["id"]},
                                         json={"ticket_id": ticket_id, "html_body": redact_all(html)})
                    redacted += 1
        return redacted

    @staticmethod
    def _theirs(comment: Any, user_id: int) -> bool:
        return isinstance(comment, dict) and comment.get("author_id") == user_id and bool(comment.get("id"))


def _failed(results: Any) -> list[str]:
    """`ticket <id>: <error code>` for every result Zendesk marks unsuccessful."""
    failed = []
    for result in results if isinstance(results, list) else []:
        if isinstance(result, dict) and result.get("success") is False:
            code = str(result.get("error", ""))
            failed.append(f"ticket {result.get('id')!s:.20}: {code if _TOKEN.match(code) else 'error'}")
    return failed
