"""A fake Mixpanel GDPR API v3 (data deletions): long-running tasks, 1 request a second.

`?token=<project token>` (403 for another project, 400 when missing) and
`Authorization: Bearer <GDPR OAuth token>` (401 otherwise) on every call.
`POST /api/app/data-deletions/v3.0/` {"distinct_ids" (1..1999, Mixpanel's deletion limit),
"compliance_type"} answers 201 {"status":"ok","results":{"task_id"}} (the spec's `JobCreated`), or
with `created_shape="array"` {"status":"ok","results":[{"tracking_id"}]} (the shape of the
reference page's example: Mixpanel documents both, SOURCE.md fact 3); `GET .../v3.0/{task_id}`
answers 200 {"status":"ok","results":{"tracking_id","status","requesting_user",
"compliance_type","project_id","date_requested","distinct_ids"}}; `DELETE
.../v3.0/{task_id}` cancels a task still PENDING or STAGING: 204, then REVOKED. A task that
has STARTED "cannot be canceled", nor one that has ended: 405 (the reference's cancel answers
"204 NoContent or 405 MethodNotAllowed").

A task is PENDING, STAGING after its first poll, STARTED after the second, and ends
when the simulated clock (`advance_clock`) passes `task_duration_s` after its
creation, after `polls_to_finish` polls when set, or on `finish_jobs()`. It ends
SUCCESS (the profiles and events of its ids are deleted; ids Mixpanel holds nothing
for end SUCCESS too: the docs give no other status for them) or FAILURE when
`fail_next_task()` was called.

The two statuses about the task itself, as Mixpanel's status table defines them:
NOT_FOUND "The deletion task cannot be found" answers a poll of a task id the fake
does not hold (never created, or dropped with `lose_task()`; its data stays), and
UNKNOWN "An error occurred while locating the deletion task" answers the next
polls after `unknown_next_polls(n)`, the task itself unchanged.

Rate limit: `requests_per_second` (Mixpanel: 1), then 429. Whether that 429 carries
headers is UNCONFIRMED: `rate_limit_headers=False` (default) gives a bare 429,
True adds Retry-After and X-RateLimit-Limit/-Remaining.
"""

from __future__ import annotations

import math
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from pipeline.devstack.fake_server import FakeProcessor, Fault, Reply, TokenBucket

PATH = "/api/app/data-deletions/v3.0/"
RUNNING = ("PENDING", "STAGING", "STARTED")
CANCELABLE = ("PENDING", "STAGING")  # STARTED: "has started, and cannot be canceled"
MAX_DISTINCT_IDS = 1999
TOO_MANY = {"status": "error", "error": "Too many requests"}


def error(message: str) -> dict[str, Any]:
    return {"status": "error", "error": message}


@dataclass
class Task:
    id: str
    distinct_ids: list[str]
    compliance_type: str
    created_clock_s: float
    status: str = "PENDING"
    polls: int = 0
    ends_as: str | None = None
    date_requested: str = field(default_factory=lambda: datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"))


class FakeMixpanel(FakeProcessor):
    name = "mixpanel"

    def __init__(self, project_token: str, oauth_tokens: set[str], requests_per_second: int = 1,
                 rate_limit_headers: bool = False, task_duration_s: float = 14 * 86400.0,
                 polls_to_finish: int | None = None,
                 project_id: int = 3141592,
                 created_shape: Literal["object", "array"] = "object") -> None:
        super().__init__()
        self.project_token = project_token
        self.oauth_tokens = set(oauth_tokens)
        self.bucket = TokenBucket(requests_per_second, 1.0)
        self.rate_limit_headers = rate_limit_headers
        self.task_duration_s = task_duration_s
        self.polls_to_finish = polls_to_finish
        self.project_id = project_id
        self.created_shape = created_shape
        self.clock_s = 0.0
        self.profiles: dict[str, int] = {}  # distinct_id -> events held
        self.tasks: dict[str, Task] = {}
        self._fail_next: list[str] = []
        self._unknown_polls = 0
        self._lock = threading.RLock()

    # -- test and demo helpers ---------------------------------------------
    def add_user(self, distinct_id: str, events: int = 3) -> None:
        with self._lock:
            self.profiles[distinct_id] = self.profiles.get(distinct_id, 0) + events

    def holds(self, distinct_id: str) -> bool:
        with self._lock:
            return distinct_id in self.profiles

    def advance_clock(self, seconds: float) -> None:
        """Simulated time: tasks older than `task_duration_s` end at their next poll."""
        with self._lock:
            self.clock_s += seconds

    def fail_next_task(self) -> None:
        """The next task created ends FAILURE."""
        with self._lock:
            self._fail_next.append("FAILURE")

    def lose_task(self, task_id: str) -> None:
        """Mixpanel no longer finds this task: polls answer NOT_FOUND; its ids' data stays."""
        with self._lock:
            del self.tasks[task_id]

    def unknown_next_polls(self, count: int = 1) -> None:
        """The next `count` polls answer UNKNOWN (an error locating the task); the task runs on."""
        with self._lock:
            self._unknown_polls += count

    def finish_jobs(self) -> None:
        with self._lock:
            for task in self.tasks.values():
                if task.status in RUNNING:
                    self._end(task)

    def _end(self, task: Task) -> None:
        if task.ends_as is not None:
            task.status = task.ends_as
            return
        held = [d for d in task.distinct_ids if d in self.profiles]
        for distinct_id in held:
            del self.profiles[distinct_id]
        task.status = "SUCCESS"

    # -- protocol ----------------------------------------------------------
    def _too_many(self, reset_s: float) -> tuple[dict[str, Any], dict[str, str]]:
        headers = {"Retry-After": str(max(1, math.ceil(reset_s))),
                   "X-RateLimit-Limit": str(self.bucket.limit),
                   "X-RateLimit-Remaining": "0"} if self.rate_limit_headers else {}
        return TOO_MANY, headers

    def fault_reply(self, status: int, reset_s: float) -> Fault:
        if status == 429:
            body, headers = self._too_many(reset_s)
            return Fault(429, body, headers)
        return Fault(status, error("Internal server error"), {})

    def control(self, action: str, body: Any) -> Reply:
        if action == "finish_jobs":
            self.finish_jobs()
            return Reply(204)
        if action == "advance_clock":
            self.advance_clock(float(body.get("seconds", 0)))
            return Reply(204)
        return super().control(action, body)

    def handle(self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str],
               body: Any) -> Reply:
        auth = headers.get("authorization", "")
        if not auth.startswith("Bearer ") or auth.removeprefix("Bearer ") not in self.oauth_tokens:
            return Reply(401, error("Invalid or expired OAuth token"))
        token = query.get("token", [""])[0]
        if not token:
            return Reply(400, error("token is required"))
        if token != self.project_token:
            return Reply(403, error("You do not have permission to access this project"))
        allowed, _remaining, reset_s = self.bucket.take()
        if not allowed:
            too_many, rate = self._too_many(reset_s)
            return Reply(429, too_many, rate)
        with self._lock:
            return self._route(method, path, body)

    def _route(self, method: str, path: str, body: Any) -> Reply:
        if not path.startswith(PATH.rstrip("/")):
            return Reply(404, error("Not found"))
        task_id = path.removeprefix(PATH.rstrip("/")).strip("/")
        if not task_id:
            if method != "POST":
                return Reply(405, error("Method not allowed"))
            return self._create(body or {})
        task = self.tasks.get(task_id)
        if method == "GET":
            return self._status(task_id, task)
        if task is None:
            return Reply(404, error("Task not found"))
        if method == "DELETE":
            if task.status not in CANCELABLE:
                return Reply(405, error(f"Task can no longer be canceled ({task.status})"))
            task.status = "REVOKED"
            return Reply(204)
        return Reply(405, error("Method not allowed"))

    def _create(self, body: dict[str, Any]) -> Reply:
        distinct_ids = body.get("distinct_ids")
        if (not isinstance(distinct_ids, list) or not distinct_ids or len(distinct_ids) > MAX_DISTINCT_IDS
                or not all(isinstance(d, str) and d for d in distinct_ids)):
            return Reply(400, error(f"distinct_ids must hold 1 to {MAX_DISTINCT_IDS} ids"))
        compliance_type = body.get("compliance_type", "GDPR")
        if compliance_type not in ("GDPR", "CCPA"):
            return Reply(400, error("compliance_type must be GDPR or CCPA"))
        task = Task(id=str(uuid.uuid4()), distinct_ids=list(distinct_ids), compliance_type=compliance_type,
                    created_clock_s=self.clock_s)
        if self._fail_next:
            task.ends_as = self._fail_next.pop(0)
        self.tasks[task.id] = task
        if self.created_shape == "array":
            return Reply(201, {"status": "ok", "results": [{"tracking_id": task.id}]})
        return Reply(201, {"status": "ok", "results": {"task_id": task.id}})

    def _status(self, task_id: str, task: Task | None) -> Reply:
        if task is None:
            return self._status_reply(task_id, "NOT_FOUND")
        if self._unknown_polls:
            self._unknown_polls -= 1
            return self._status_reply(task_id, "UNKNOWN")
        self._advance(task)
        return self._status_reply(task_id, task.status, task)

    def _status_reply(self, task_id: str, status: str, task: Task | None = None) -> Reply:
        return Reply(200, {"status": "ok", "results": {
            "tracking_id": task_id, "status": status, "requesting_user": "dpo@site.example",
            "compliance_type": task.compliance_type if task else "", "project_id": self.project_id,
            "date_requested": task.date_requested if task else "",
            "distinct_ids": list(task.distinct_ids) if task else []}})

    def _advance(self, task: Task) -> None:
        if task.status not in RUNNING:
            return
        task.polls += 1
        due = (self.clock_s - task.created_clock_s >= self.task_duration_s
               or (self.polls_to_finish is not None and task.polls >= self.polls_to_finish))
        if due:
            self._end(task)
        elif task.status == "PENDING":
            task.status = "STAGING"
        elif task.status == "STAGING":
            task.status = "STARTED"
