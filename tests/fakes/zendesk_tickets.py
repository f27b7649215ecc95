"""The fake Zendesk's tickets: soft and permanent deletion (job statuses), comments, redaction.

From the Support API contract: `DELETE /api/v2/tickets/{id}` answers 204 (soft delete);
`DELETE /api/v2/deleted_tickets/destroy_many?ids=` (up to 100 soft-deleted tickets) answers 200
`{"job_status": {...}}` and deletes in the background; `GET /api/v2/job_statuses/{id}` reads
`status` (queued, working, failed, completed) and `results[]`. Each read of a job stands for
the time passing (queued -> working -> completed). "If one ticket fails to be deleted, the
endpoint still attempts to delete the others": a ticket seeded in `unpurgeable` (or one never
soft-deleted) gets a `{"id", "action", "success": false, "error", "details"}` result and the job
still ends `completed`. `GET /api/v2/tickets/{id}/comments` lists comments, paged
(tests/fakes/zendesk_pages.py);
`PUT /api/v2/comment_redactions/{comment_id}` {"ticket_id", "html_body"} replaces what the
`<redact>` tags enclose by the ▇ symbol; the rest of `html_body` must be the comment's own.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

from pipeline.devstack.fake_server import Reply
from tests.fakes.zendesk_pages import page_of

TICKET_PATHS = ("/api/v2/tickets/", "/api/v2/deleted_tickets", "/api/v2/job_statuses/",
                "/api/v2/comment_redactions/")
REDACTED_CHAR = "\u2587"
_REDACT = re.compile(r"<redact>(.*?)</redact>", re.S)
_TAGS = re.compile(r"<[^>]+>")
AGENT_ID = 1


def _plain(html: str) -> str:
    return _TAGS.sub("", html)


class ZendeskTicketsApi:
    """Mixed into FakeZendesk, which provides the stores and replies named here."""

    tickets: dict[int, dict[str, Any]]
    comments: dict[int, list[dict[str, Any]]]
    jobs: dict[str, dict[str, Any]]
    unpurgeable: dict[int, str]

    def _new_id(self) -> int:
        raise NotImplementedError

    def not_found(self) -> Reply:
        raise NotImplementedError

    def base_url(self) -> str:
        raise NotImplementedError

    def _seed_comments(self, ticket_id: int, user_id: int, name: str) -> None:
        first = f'<div class="zd-comment" dir="auto">Hello, I am {name}. My order did not arrive.</div>'
        reply = '<div class="zd-comment" dir="auto">Sorry to hear that, we are looking into it.</div>'
        self.comments[ticket_id] = [
            {"id": self._new_id(), "type": "Comment", "author_id": author, "public": True, "html_body": html,
             "plain_body": _plain(html), "body": _plain(html), "via": {"channel": channel}}
            for author, html, channel in ((user_id, first, "email"), (AGENT_ID, reply, "web"))]

    def add_comments(self, ticket_id: int, authors: list[int], text: str = "Another message") -> list[int]:
        """More comments on a ticket, one per author in this order; their ids."""
        added = []
        for n, author in enumerate(authors):
            html = f'<div class="zd-comment" dir="auto">{text} {n + 1} from {author}.</div>'
            added.append(self._new_id())
            self.comments.setdefault(ticket_id, []).append(
                {"id": added[-1], "type": "Comment", "author_id": author, "public": True, "html_body": html,
                 "plain_body": _plain(html), "body": _plain(html), "via": {"channel": "web"}})
        return added

    def _tickets_route(self, method: str, path: str, query: dict[str, list[str]],
                       body: Any) -> Reply:
        parts = path.strip("/").split("/")
        if method == "DELETE" and len(parts) == 4 and parts[2] == "tickets" and parts[3].isdigit():
            ticket = self.tickets.get(int(parts[3]))
            if ticket is None or ticket.get("deleted"):
                return self.not_found()
            ticket["deleted"] = True
            return Reply(204)
        if method == "GET" and len(parts) == 5 and parts[2] == "tickets" and parts[4] == "comments":
            ticket = self.tickets.get(int(parts[3])) if parts[3].isdigit() else None
            if ticket is None or ticket.get("deleted"):
                return self.not_found()
            comments = [dict(c) for c in self.comments.get(ticket["id"], [])]
            return page_of(f"{self.base_url()}{path}.json", query, "comments", comments)
        if method == "DELETE" and path == "/api/v2/deleted_tickets/destroy_many":
            raw = query.get("ids", [""])[0]
            ids = [int(i) for i in raw.split(",") if i.strip().isdigit()]
            if not ids or len(ids) > 100:
                return Reply(400, {"error": "InvalidValue", "description": "ids: give 1 to 100 ticket ids"})
            job_id = uuid.uuid4().hex
            self.jobs[job_id] = {"id": job_id, "job_type": "bulk_delete_tickets_permanently",
                                 "status": "queued",
                                 "total": len(ids), "progress": 0, "message": None, "results": None,
                                 "url": f"/api/v2/job_statuses/{job_id}.json", "_ids": ids}
            return Reply(200, {"job_status": self._job_view(self.jobs[job_id])})
        if method == "GET" and len(parts) == 4 and parts[2] == "job_statuses":
            job = self.jobs.get(parts[3])
            if job is None:
                return self.not_found()
            self._advance_job(job)
            return Reply(200, {"job_status": self._job_view(job)})
        if method == "PUT" and len(parts) == 4 and parts[2] == "comment_redactions" and parts[3].isdigit():
            return self._redact_comment(int(parts[3]), body or {})
        return self.not_found()


    def _job_view(self, job: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in job.items() if not k.startswith("_")}


    def _advance_job(self, job: dict[str, Any]) -> None:
        if job["status"] == "queued":
            job["status"] = "working"
            return
        if job["status"] != "working":
            return
        results = []
        for ticket_id in job["_ids"]:
            ticket = self.tickets.get(ticket_id)
            error = self.unpurgeable.get(ticket_id)
            if error is None and (ticket is None or not ticket.get("deleted")):
                error = "TicketNotDeleted"
            if error is not None:
                results.append({"id": ticket_id, "action": "destroy", "success": False, "error": error,
                                "details": "The ticket could not be permanently deleted"})
                continue
            del self.tickets[ticket_id]
            self.comments.pop(ticket_id, None)
            results.append({"id": ticket_id, "action": "destroy", "status": "Deleted", "success": True})
        job.update(status="completed", progress=len(job["_ids"]), results=results,
                   message=f"Completed at {time.strftime('%Y-%m-%d %H:%M:%S +0000', time.gmtime())}")


    def _redact_comment(self, comment_id: int, body: dict[str, Any]) -> Reply:
        ticket_id = body.get("ticket_id")
        comments = self.comments.get(ticket_id) if isinstance(ticket_id, int) else None
        comment = next((c for c in comments or [] if c["id"] == comment_id), None)
        if comment is None:
            return self.not_found()
        html = str(body.get("html_body", ""))
        if _REDACT.sub(lambda m: m.group(1), html) != comment["html_body"]:
            return Reply(422, {"error": "RecordInvalid",
                               "description": "html_body must be the comment's html_body with <redact> tags"})
        redacted = _REDACT.sub(lambda m: REDACTED_CHAR * len(m.group(1)), html)
        comment.update(html_body=redacted, plain_body=_plain(redacted), body=_plain(redacted))
        return Reply(200, {"comment": dict(comment)})
