"""A fake Segment Public API for regulations (deletion and suppression), asynchronous.

`Authorization: Bearer <token>` (401 RequestErrorEnvelope otherwise).
`POST /regulations` {"regulationType","subjectType","subjectIds"} answers 200
{"data":{"regulateId"}} (422 for a bad body); `GET /regulations/{id}` gives
{"data":{"regulation":{"id","workspaceId","overallStatus","createdAt","finishedAt",
"streamStatus":[{"id","destinationStatus":[{"name","id","status","errString","finishedAt"}]}]}}}
and 404 for an unknown id. A regulation is INITIALIZED, RUNNING from its first poll,
and ends after `polls_to_finish` polls (None: only `finish_jobs()` ends it). At its end
each destination FINISHED (the user's data there is deleted) or FAILED (when
`fail_destination()` named it: the data stays), so the overall status is FINISHED,
PARTIAL_SUCCESS or FAILED; `end_next_as("INVALID" | "NOT_SUPPORTED")` forces one.
Like Segment, a regulation for an unknown userId runs and finishes: no "not found".

600 requests a minute; 200s carry X-RateLimit-Remaining/-Consumed/-Reset (RFC 5322
date); 429 carries Retry-After in whole seconds.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

from pipeline.devstack.fake_server import FakeProcessor, Fault, Reply, TokenBucket

REGULATION_TYPES = ("DELETE_INTERNAL", "DELETE_ONLY", "SUPPRESS_ONLY", "SUPPRESS_WITH_DELETE",
                    "SUPPRESS_WITH_DELETE_INTERNAL", "UNSUPPRESS")
SOURCE_ID = "src_web_1"
DEFAULT_DESTINATIONS = {"dst_amplitude": "Amplitude", "dst_braze": "Braze", "dst_bigquery": "BigQuery"}


def envelope(error_type: str, message: str) -> dict[str, Any]:
    return {"errors": [{"type": error_type, "message": message}]}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


@dataclass
class Regulation:
    id: str
    regulation_type: str
    subject_ids: list[str]
    status: str = "INITIALIZED"
    polls: int = 0
    forced_end: str | None = None
    destination_status: dict[str, str] = field(default_factory=dict)
    created_at: str = field(default_factory=_now)
    finished_at: str | None = None


class FakeSegment(FakeProcessor):
    name = "segment"

    def __init__(self, tokens: set[str], limit_per_window: int = 600, window_s: float = 60.0,
                 polls_to_finish: int | None = 2, destinations: dict[str, str] | None = None) -> None:
        super().__init__()
        self.tokens = set(tokens)
        self.bucket = TokenBucket(limit_per_window, window_s)
        self.polls_to_finish = polls_to_finish
        self.destinations = dict(destinations or DEFAULT_DESTINATIONS)
        self.workspace_id = "ws_" + uuid.uuid4().hex[:12]
        self.held: dict[str, set[str]] = {}  # userId -> destination ids still holding data
        self.suppressed: set[str] = set()
        self.regulations: dict[str, Regulation] = {}
        self._failing: set[str] = set()
        self._next_ends_as: list[str] = []
        self._lock = threading.RLock()

    # -- test and demo helpers ---------------------------------------------
    def add_user(self, user_id: str) -> None:
        with self._lock:
            self.held[user_id] = set(self.destinations)

    def holds(self, user_id: str) -> bool:
        with self._lock:
            return bool(self.held.get(user_id))

    def destinations_holding(self, user_id: str) -> set[str]:
        with self._lock:
            return set(self.held.get(user_id, set()))

    def fail_destination(self, destination_id: str) -> None:
        """This destination FAILs in every regulation that ends from now on (until `repair`)."""
        if destination_id not in self.destinations:
            raise ValueError("unknown destination")
        with self._lock:
            self._failing.add(destination_id)

    def repair(self) -> None:
        with self._lock:
            self._failing.clear()

    def end_next_as(self, status: str) -> None:
        if status not in ("INVALID", "NOT_SUPPORTED", "FAILED"):
            raise ValueError("force INVALID, NOT_SUPPORTED or FAILED")
        with self._lock:
            self._next_ends_as.append(status)

    def finish_jobs(self) -> None:
        with self._lock:
            for regulation in self.regulations.values():
                if regulation.status in ("INITIALIZED", "RUNNING"):
                    self._end(regulation)

    def _end(self, regulation: Regulation) -> None:
        regulation.finished_at = _now()
        if regulation.forced_end is not None:
            regulation.status = regulation.forced_end
            regulation.destination_status = dict.fromkeys(self.destinations, regulation.forced_end)
            return
        deletes = regulation.regulation_type != "SUPPRESS_ONLY" and regulation.regulation_type != "UNSUPPRESS"
        for destination_id in self.destinations:
            failed = destination_id in self._failing
            regulation.destination_status[destination_id] = "FAILED" if failed else "FINISHED"
            if deletes and not failed:
                for user_id in regulation.subject_ids:
                    self.held.get(user_id, set()).discard(destination_id)
        for user_id in regulation.subject_ids:
            if regulation.regulation_type == "UNSUPPRESS":
                self.suppressed.discard(user_id)
            elif regulation.regulation_type.startswith("SUPPRESS"):
                self.suppressed.add(user_id)
            if user_id in self.held and not self.held[user_id]:
                del self.held[user_id]
        statuses = set(regulation.destination_status.values())
        regulation.status = ("FINISHED" if statuses <= {"FINISHED"} else
                             "FAILED" if statuses == {"FAILED"} else "PARTIAL_SUCCESS")

    # -- protocol ----------------------------------------------------------
    def rate_headers(self, remaining: int, reset_s: float) -> dict[str, str]:
        reset_at = datetime.fromtimestamp(math.ceil(time.time() + reset_s), UTC)
        return {"X-RateLimit-Remaining": str(remaining),
                "X-RateLimit-Consumed": str(self.bucket.limit - remaining),
                "X-RateLimit-Reset": format_datetime(reset_at, usegmt=True)}

    def fault_reply(self, status: int, reset_s: float) -> Fault:
        if status == 429:
            return Fault(429, envelope("too-many-requests", "Too many requests"),
                         {"Retry-After": str(max(1, math.ceil(reset_s)))})
        return Fault(status, envelope("internal-error", "Internal Server Error"), {})

    def control(self, action: str, body: Any) -> Reply:
        if action == "finish_jobs":
            self.finish_jobs()
            return Reply(204)
        if action == "fail_destination":
            self.fail_destination(str(body.get("destination_id")))
            return Reply(204)
        return super().control(action, body)

    def handle(self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str],
               body: Any) -> Reply:
        auth = headers.get("authorization", "")
        if not auth.startswith("Bearer ") or auth.removeprefix("Bearer ") not in self.tokens:
            return Reply(401, envelope("unauthorized", "Unauthorized"))
        allowed, remaining, reset_s = self.bucket.take()
        if not allowed:
            return Reply(429, envelope("too-many-requests", "Too many requests"),
                         {"Retry-After": str(max(1, math.ceil(reset_s)))})
        with self._lock:
            reply = access_reply(self, method, path, query, auth)  # systems check: see the block at the end
            if reply is None:
                reply = self._route(method, path, body)
        if 200 <= reply.status < 300:
            reply.headers = {**self.rate_headers(remaining, reset_s), **(reply.headers or {})}
        return reply

    def _route(self, method: str, path: str, body: Any) -> Reply:
        if method == "POST" and path == "/regulations":
            return self._create(body or {})
        if method == "GET" and path.startswith("/regulations/"):
            regulation = self.regulations.get(path.removeprefix("/regulations/"))
            if regulation is not None and self._forgotten(regulation):
                regulation = None
            if regulation is None:
                return Reply(404, envelope("not-found", "Regulation not found"))
            if regulation.status in ("INITIALIZED", "RUNNING"):
                regulation.polls += 1
                regulation.status = "RUNNING"
                if self.polls_to_finish is not None and regulation.polls >= self.polls_to_finish:
                    self._end(regulation)
            return Reply(200, {"data": {"regulation": self._view(regulation)}})
        return Reply(404, envelope("not-found", "Resource not found"))

    def _create(self, body: dict[str, Any]) -> Reply:
        regulation_type = body.get("regulationType")
        subject_ids = body.get("subjectIds")
        if regulation_type not in REGULATION_TYPES:
            return Reply(422, envelope("validation", "regulationType is invalid"))
        if body.get("subjectType") not in ("USER_ID", "OBJECT_ID"):
            return Reply(422, envelope("validation", "subjectType is invalid"))
        if (not isinstance(subject_ids, list) or not subject_ids or len(subject_ids) > 5000
                or not all(isinstance(s, str) and s for s in subject_ids)):
            return Reply(422, envelope("validation", "subjectIds must hold 1 to 5000 ids"))
        regulation = Regulation(id=uuid.uuid4().hex[:27], regulation_type=regulation_type,
                                subject_ids=list(subject_ids))
        if self._next_ends_as:
            regulation.forced_end = self._next_ends_as.pop(0)
        self.regulations[regulation.id] = regulation
        return Reply(200, {"data": {"regulateId": regulation.id}})

    def _view(self, regulation: Regulation) -> dict[str, Any]:
        destinations = [{"name": name, "id": destination_id,
                         "status": regulation.destination_status.get(destination_id, regulation.status),
                         "errString": "destination rejected the deletion"
                         if regulation.destination_status.get(destination_id) == "FAILED" else "",
                         "finishedAt": regulation.finished_at or ""}
                        for destination_id, name in self.destinations.items()]
        view = {"id": regulation.id, "workspaceId": self.workspace_id, "overallStatus": regulation.status,
                "createdAt": regulation.created_at,
                "streamStatus": [{"id": SOURCE_ID, "destinationStatus": destinations}]}
        if regulation.finished_at is not None:  # a string when set, absent before (never null)
            view["finishedAt"] = regulation.finished_at
        return view

    # -- Retention of regulations ----------------------------------------------------------------
    # The 2026 SDK: list endpoints return only regulations from the past 90 days; older ones give
    # 404. `age(regulate_id, days)` moves a regulation's creation back in time.
    def age(self, regulate_id: str, days: float) -> None:
        with self._lock:
            regulation = self.regulations[regulate_id]
            created = datetime.strptime(regulation.created_at, CREATED_FORMAT).replace(tzinfo=UTC)
            regulation.created_at = (created - timedelta(days=days)).strftime(CREATED_FORMAT)

    @staticmethod
    def _forgotten(regulation: Regulation) -> bool:
        created = datetime.strptime(regulation.created_at, CREATED_FORMAT).replace(tzinfo=UTC)
        return datetime.now(UTC) - created > RETENTION


RETENTION = timedelta(days=90)
CREATED_FORMAT = "%Y-%m-%dT%H:%M:%S.000Z"


# == Systems check (erasure systems check): list the workspace's regulations ========================
# Additive block. GET /regulations?pagination.count=N (listWorkspaceRegulations; `pagination` is a
# required deep object, sent dotted as Segment's docs show) answers {"data": {"regulations": [...],
# "pagination": {"current": ...}}}, 422 without a count of 1 to 200. `forbid` is the switch: a token
# whose role may not use Deletion and Suppression is answered 403 (UNCONFIRMED: the subset lists no
# 403; every HTTP API can send one, RFC 9110 §15.5.4).

def forbid(fake: FakeSegment, token: str) -> None:
    """`token` authenticates, but its role may not use Deletion and Suppression."""
    fake.__dict__.setdefault("forbidden_tokens", set()).add(token)


def access_reply(fake: FakeSegment, method: str, path: str, query: dict[str, list[str]],
                 authorization: str) -> Reply | None:
    if authorization.removeprefix("Bearer ") in fake.__dict__.get("forbidden_tokens", set()):
        return Reply(403, envelope("forbidden", "The token may not use Deletion and Suppression"))
    if method != "GET" or path != "/regulations":
        return None
    count = query.get("pagination.count", [""])[0]
    if not count.isdigit() or not 1 <= int(count) <= 200:
        return Reply(422, envelope("validation", "pagination.count must be between 1 and 200"))
    live = sorted((r for r in fake.regulations.values() if not fake._forgotten(r)),
                  key=lambda r: r.created_at, reverse=True)
    entries = [{"id": r.id, "subjectType": "USER_ID", "subjects": list(r.subject_ids), "status": r.status,
                "createdAt": r.created_at, **({"finishedAt": r.finished_at} if r.finished_at else {})}
               for r in live[:int(count)]]
    pagination = {"current": "MA==", "totalEntries": len(live)}
    return Reply(200, {"data": {"regulations": entries, "pagination": pagination}})
