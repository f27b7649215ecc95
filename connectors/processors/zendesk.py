"""Zendesk Support users: look up by e-mail, soft delete, then delete permanently.

`GET /api/v2/users/search.json?query=` finds the user (active users only), then
`DELETE /api/v2/users/{id}` (soft) and `DELETE /api/v2/deleted_users/{id}` (permanent, 200
with e-mail and phone nulled). Basic auth `{agent_email}/token:{api_token}`. 404 on either
delete means that step is already done. 429 comes with `Retry-After`; permanent deletion has
its own limit (700 users every 10 minutes).

Each step is idempotent across attempts:
- the ids sent a soft delete are remembered per request, so a retry whose lookup no longer
  finds the (now soft-deleted) user still goes on with the permanent delete;
- once every soft delete is done, a retryable failure of the permanent step returns
  `pending` with a `job_ref` naming the ids left, so the next attempt (even after a
  restart) resumes with the permanent deletes alone, after the wait Zendesk announced.

Tickets are separate objects that survive the user's deletion. `tickets` chooses what
happens to those the person requested, before the user is deleted
(`connectors/processors/zendesk_tickets.py`): `keep` (default) reports them as residual
data, `delete` deletes them for good (an asynchronous job, polled; partial failures fail the
erasure), `redact` redacts every comment the person wrote and reports the rest as residual.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import requests
from pydantic import BaseModel, ConfigDict, Field

from connectors.access import AccessReport
from connectors.auth import HttpBasicAuth
from connectors.base import (
    AuthError,
    EraseResult,
    PermanentError,
    RetryableError,
    TaskContext,
    identities_of,
    require_secret,
)
from connectors.client import ProcessorClient
from connectors.http import json_object
from connectors.processors.zendesk_pages import offset_pages
from connectors.processors.zendesk_tickets import TICKETS_PREFIX, TicketEraser, TicketMode
from schemas import Evidence, ResidualData, SubjectIdentities

SEARCH = "/api/v2/users/search.json"
TICKETS = "/api/v2/users/{id}/tickets/requested.json"
USER = "/api/v2/users/{id}.json"
DELETED_USER = "/api/v2/deleted_users/{id}.json"
ME = "/api/v2/users/me.json"
ADMIN_ROLE = "admin role"
JOB_PREFIX = "zendesk-permanent:"
DEFAULT_POLL_S = 30.0


class ZendeskSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str = Field(pattern=r"^https?://", description="https://{subdomain}.zendesk.com")
    email_env: str = "ZENDESK_EMAIL"
    api_token_env: str = "ZENDESK_API_TOKEN"
    timeout_s: float = Field(default=10.0, gt=0)
    tickets: TicketMode = Field(default="keep", description="The person's tickets before the user is "
                                                            "deleted: keep (residual), delete, redact")
    poll_after_s: float = Field(default=60.0, gt=0, description="Wait before polling a ticket deletion job")


@dataclass
class Progress:
    """What one request's erasure has done so far: user id -> tickets they requested."""

    tickets: dict[int, int] = field(default_factory=dict)  # ids sent a soft delete


@dataclass(frozen=True)
class Job:
    ids: tuple[int, ...]
    erased: int
    tickets: int

    def ref(self) -> str:
        return f"{JOB_PREFIX}ids={','.join(map(str, self.ids))};erased={self.erased};tickets={self.tickets}"

    @staticmethod
    def parse(ref: str, system: str) -> Job:
        try:
            fields = dict(part.split("=", 1) for part in ref.removeprefix(JOB_PREFIX).split(";"))
            return Job(ids=tuple(int(i) for i in fields["ids"].split(",") if i),
                       erased=int(fields["erased"]), tickets=int(fields["tickets"]))
        except (KeyError, ValueError):
            raise PermanentError(system, "unreadable job_ref for the permanent deletion step") from None


class ZendeskConnector:
    def __init__(self, system: str, settings: ZendeskSettings) -> None:
        self.system = system
        self.settings = settings
        agent_email = require_secret(settings.email_env, system)
        api_token = require_secret(settings.api_token_env, system)
        self._credential_env = f"{settings.email_env}, {settings.api_token_env}"
        self._client = ProcessorClient(system, settings.base_url,
                                       auth=HttpBasicAuth(f"{agent_email}/token", api_token),
                                       timeout_s=settings.timeout_s, secret_env=self._credential_env)
        self._progress: dict[str, Progress] = {}
        self._lock = threading.Lock()
        self._tickets = TicketEraser(system, self._client, settings.poll_after_s)

    # -- HTTP ------------------------------------------------------------------
    def _call(self, method: str, path: str, user_id: int | None = None, **kwargs: Any) -> requests.Response:
        """A call whose 404 means "nothing there (any more)": returned, not raised."""
        return self._client.request(method, path, None if user_id is None else {"id": user_id},
                                    return_statuses=(404,), **kwargs)

    def _find(self, email: str) -> list[int]:
        # the search matches partial values of several fields, a page of 100 at a time (offset
        # pagination only): every page read, exact e-mail matches kept
        return [int(u["id"]) for page in offset_pages(self._client, SEARCH, "users", {"query": email})
                for u in page if str(u.get("email") or "").lower() == email.lower() and u.get("id")]

    def _requested_tickets(self, user_id: int) -> int:
        response = self._call("GET", TICKETS, user_id)
        if response.status_code == 404:
            return 0
        document = json_object(response, self.system, f"GET {TICKETS}")
        count = document.get("count")
        return int(count) if isinstance(count, int) else len(document.get("tickets") or [])

    def _expect(self, response: requests.Response, route: str) -> None:
        if response.status_code not in (200, 204, 404):
            raise PermanentError(self.system, f"unexpected HTTP {response.status_code} from {route}")

    # -- erasure -------------------------------------------------------------
    def erase(self, subject: SubjectIdentities, context: TaskContext) -> EraseResult:
        if context.job_ref and context.job_ref.startswith(JOB_PREFIX):
            job = Job.parse(context.job_ref, self.system)
            return self._permanent(list(job.ids), job.erased, job.tickets)
        tickets_done = False
        if context.job_ref and context.job_ref.startswith(TICKETS_PREFIX):
            checked = self._tickets.check(context.job_ref)
            if isinstance(checked, EraseResult):
                return checked
            tickets_done = True
        emails = list(dict.fromkeys(e.strip().lower() for e in identities_of(subject, "email") if e.strip()))
        with self._lock:
            progress = self._progress.setdefault(context.request_id, Progress())
        found: dict[int, int] = {}
        for email in emails:
            for user_id in self._find(email):
                if user_id not in found and user_id not in progress.tickets:
                    found[user_id] = self._requested_tickets(user_id)
        if not found and not progress.tickets:
            self._forget(context.request_id)
            return EraseResult(status="not_found", evidence=Evidence(records_affected=0))
        if found and self.settings.tickets != "keep" and not tickets_done:
            pending = self._erase_tickets(found)
            if pending is not None:
                self._forget(context.request_id)  # the job's poll looks the users up again
                return pending
        progress.tickets.update(found)  # remembered before the calls: an answer may be lost
        for user_id in progress.tickets:  # again for ids of an earlier attempt: 404 once done
            response = self._call("DELETE", USER, user_id)
            self._expect(response, f"DELETE {USER}")
        # every user is soft-deleted now (404: an earlier attempt did it): the permanent step
        self._forget(context.request_id)
        return self._permanent(list(progress.tickets), 0, sum(progress.tickets.values()))

    def _permanent(self, ids: list[int], erased: int, tickets: int) -> EraseResult:
        last_status: int | None = None
        for index, user_id in enumerate(ids):
            try:
                response = self._call("DELETE", DELETED_USER, user_id)
            except RetryableError as exc:
                job = Job(ids=tuple(ids[index:]), erased=erased, tickets=tickets)
                return EraseResult(
                    status="pending", job_ref=job.ref(),
                    poll_after_s=exc.retry_after_s if exc.retry_after_s is not None else DEFAULT_POLL_S,
                    evidence=Evidence(http_status=exc.http_status, records_affected=erased,
                                      reference=f"soft-deleted; permanent deletion of {len(ids) - index} "
                                                "user(s) waits on Zendesk"))
            self._expect(response, f"DELETE {DELETED_USER}")
            last_status = response.status_code
            erased += 1  # 404: already deleted for good by an earlier attempt of this request
        reference = f"deleted_users {', '.join(map(str, ids))}" if ids else "deleted_users"
        if tickets:
            reference += f"; {tickets} requested ticket(s) remain (separate objects, not deleted)"
        if tickets and self.settings.tickets == "redact":
            reference += ", the person's comments redacted"
        if not erased:
            return EraseResult(status="not_found", evidence=Evidence(
                http_status=last_status, records_affected=0, reference=reference[:200]))
        # The permanent delete answered: confirmed. The tickets keep their text unless redacted.
        residual = self._ticket_residual(tickets)
        return EraseResult(status="erased", evidence=Evidence(
            http_status=last_status, records_affected=erased, reference=reference[:200],
            assurance="confirmed", residual=residual))

    def _erase_tickets(self, found: dict[int, int]) -> EraseResult | None:
        """Delete (pending: a job) or redact the tickets of the users found, before the users."""
        if self.settings.tickets == "delete":
            ticket_ids = [t for user_id in found for t in self._tickets.requested(user_id)]
            if ticket_ids:
                return self._tickets.delete(ticket_ids)
            found.update(dict.fromkeys(found, 0))
            return None
        for user_id in found:
            self._tickets.redact(user_id, self._tickets.requested(user_id))
        return None

    def _ticket_residual(self, tickets: int) -> list[ResidualData]:
        if not tickets:
            return []
        if self.settings.tickets != "redact":
            return [ResidualData(what=f"{tickets} requested ticket(s) with their text (not redacted)")]
        return [ResidualData(what=f"{tickets} requested ticket(s): subjects and agents' replies "
                                  "(the person's comments redacted)"),
                ResidualData(what="original e-mails behind the redacted comments, until Zendesk's "
                                  "background redaction ends")]

    def _forget(self, request_id: str) -> None:
        with self._lock:
            self._progress.pop(request_id, None)

    def check(self) -> AccessReport:
        """`GET /api/v2/users/me`: who the token acts as. Permanent deletion is for admins (and agents
        in a custom role allowed to manage end users, which the role id alone does not show)."""
        response = self._call("GET", ME)
        user = json_object(response, self.system, f"GET {ME}").get("user") or {}
        if not user.get("id"):  # Zendesk answers an anonymous user to unauthenticated calls
            raise AuthError(self.system, f"GET {ME} answered an anonymous user; check {self._credential_env}")
        role = str(user.get("role") or "unknown")
        needed = [ADMIN_ROLE]
        report = AccessReport(reachable=True, authenticated=True, scopes_needed=needed, scopes_granted=[role],
                              credential_env=self._credential_env)
        if role == "admin":
            return report.model_copy(update={"scopes_granted": [ADMIN_ROLE],
                                             "notes": "the token acts as an admin"})
        if role == "agent" and user.get("custom_role_id"):
            return report.model_copy(update={"unverified": [
                "manage end users (permanent deletion) in the agent's custom role"],
                "notes": "the token acts as an agent in a custom role"})
        return report.model_copy(update={"missing": needed, "notes": (
            f"the token acts as {role!r}: only admins (or agents whose custom role may manage end "
            "users) may delete users permanently; use an admin's API token")})

    def close(self) -> None:
        self._client.close()
