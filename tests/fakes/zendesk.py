"""A fake Zendesk Support users API that behaves as the documented one does.

Basic auth `{agent_email}/token:{api_token}` (401 `{"error": "Couldn't authenticate you"}`
otherwise). `GET /api/v2/users/search.json?query=` answers `users[]` (active users only);
`DELETE /api/v2/users/{id}` soft-deletes; `DELETE /api/v2/deleted_users/{id}` then deletes
for good, answering 200 `{"deleted_user": {..., "email": null, "phone": null}}` and keeping
a "Permanently Deleted User" row. Tickets are separate objects: they survive both deletions.

Rate limits: `X-Rate-Limit` and `X-Rate-Limit-Remaining` on every response, `ratelimit-limit`,
`-remaining` and `-reset` on list endpoints; 429 with a text/plain body and `Retry-After`
(seconds). Permanent deletion has its own limiter (700 users every 10 minutes) that answers
429 with `Retry-After` as well.

Listings are paged as Zendesk documents (tests/fakes/zendesk_pages.py): users search by offset
only, a user's tickets and a ticket's comments by cursor (`page[size]`) or offset, 100 at most.

UNCONFIRMED, so a switch of the constructor: the 404 body (`not_found_body`), by default
`{"error": "RecordNotFound", "description": "Not found"}`; None answers 404 with no body.
"""

from __future__ import annotations

import base64
import math
import threading
from typing import Any

from pipeline.devstack.fake_server import FakeProcessor, Fault, Reply, TokenBucket
from tests.fakes.zendesk_pages import page_of
from tests.fakes.zendesk_tickets import TICKET_PATHS, ZendeskTicketsApi

RECORD_NOT_FOUND: dict[str, Any] = {"error": "RecordNotFound", "description": "Not found"}
UNAUTHORIZED = {"error": "Couldn't authenticate you"}
# What Zendesk's (deleted) user objects always carry besides id, name, e-mail, phone and role.
USER_FIELDS: dict[str, Any] = {
    "created_at": "2026-01-05T10:00:00Z", "updated_at": "2026-01-05T10:00:00Z", "time_zone": "Paris",
    "locale": "fr", "locale_id": 1, "organization_id": None, "shared_phone_number": None, "photo": None}
TEXT_KEY = "__text__"  # a reply body {TEXT_KEY: "..."} is sent as text/plain


def text_body(text: str) -> dict[str, Any]:
    return {TEXT_KEY: text}


class FakeZendesk(ZendeskTicketsApi, FakeProcessor):
    name = "zendesk"

    def __init__(self, agent_email: str, api_tokens: set[str], limit_per_window: int = 700,
                 window_s: float = 60.0, permanent_limit: int = 700, permanent_window_s: float = 600.0,
                 not_found_body: dict[str, Any] | None = RECORD_NOT_FOUND) -> None:
        super().__init__()
        self.credentials = {f"{agent_email}/token:{token}" for token in api_tokens}
        self.agent_email = agent_email
        self.bucket = TokenBucket(limit_per_window, window_s)
        self.permanent_bucket = TokenBucket(permanent_limit, permanent_window_s)
        self.not_found_body = not_found_body
        self.users: dict[int, dict[str, Any]] = {}
        self.tickets: dict[int, dict[str, Any]] = {}
        self.permanently_deleted: dict[int, dict[str, Any]] = {}  # nulled PII, as /deleted_users lists it
        self.comments: dict[int, list[dict[str, Any]]] = {}  # ticket id -> its comments
        self.jobs: dict[str, dict[str, Any]] = {}
        self.unpurgeable: dict[int, str] = {}  # ticket id -> the error its permanent deletion meets
        self._next_id = 360_000_001
        self._lock = threading.Lock()

    # -- serving text/plain bodies (429s are text in Zendesk) ---------------
    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        url = super().start(host, port)
        assert self._server is not None
        json_handler: Any = self._server.RequestHandlerClass
        fake = self

        class Handler(json_handler):  # type: ignore[misc]
            def _reply(self, reply: Reply) -> None:
                if not (isinstance(reply.body, dict) and TEXT_KEY in reply.body):
                    super()._reply(reply)
                    return
                with fake.state.lock:
                    fake.state.responses[reply.status] += 1
                payload = str(reply.body[TEXT_KEY]).encode()
                self.send_response(reply.status)
                for key, value in {**fake.extra_headers(), **(reply.headers or {})}.items():
                    self.send_header(key, value)
                self.send_header("content-type", "text/plain; charset=utf-8")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self._server.RequestHandlerClass = Handler
        return url

    # -- the store, for seeding and observing -----------------------------
    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def add_user(self, email: str, name: str = "Seeded User", tickets: int = 0) -> int:
        with self._lock:
            user_id = self._new_id()
            self.users[user_id] = {"id": user_id, "name": name, "email": email.lower(), "phone": None,
                                   "role": "end-user", "active": True, "state": "active",
                                   **USER_FIELDS}
            for n in range(tickets):
                ticket_id = self._new_id()
                self.tickets[ticket_id] = {"id": ticket_id, "requester_id": user_id,
                                           "subject": f"Question {n + 1}", "status": "open"}
                self._seed_comments(ticket_id, user_id, name)
        return user_id

    def base_url(self) -> str:
        return self.url

    def state_of(self, email: str) -> str | None:
        """active, soft_deleted, or None (unknown or permanently deleted: no e-mail left)."""
        with self._lock:
            for user in self.users.values():
                if user["email"] == email.lower():
                    return str(user["state"])
        return None

    def has_user(self, email: str) -> bool:
        return self.state_of(email) is not None

    def tickets_of(self, user_id: int) -> list[dict[str, Any]]:
        with self._lock:
            return [t for t in self.tickets.values() if t["requester_id"] == user_id]

    def user(self, user_id: int) -> dict[str, Any]:
        with self._lock:
            return dict(self.users[user_id])

    # -- replies -------------------------------------------------------------
    def rate_headers(self, remaining: int) -> dict[str, str]:
        return {"X-Rate-Limit": str(self.bucket.limit), "X-Rate-Limit-Remaining": str(remaining)}

    @staticmethod
    def too_many(reset_s: float, headers: dict[str, str]) -> Reply:
        return Reply(429, text_body("Too Many Requests"),
                     {**headers, "Retry-After": str(max(1, math.ceil(reset_s)))})

    def not_found(self) -> Reply:
        return Reply(404, dict(self.not_found_body) if self.not_found_body is not None else None)

    def fault_reply(self, status: int, reset_s: float) -> Fault:
        if status == 429:
            reply = self.too_many(reset_s, self.rate_headers(0))
            return Fault(429, text_body("Too Many Requests"), reply.headers or {})
        return Fault(status, {"error": "InternalServerError", "description": "Something went wrong"}, {})

    def handle(self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str],
               body: Any) -> Reply:
        if not self._authenticated(headers.get("authorization", "")):
            return Reply(401, UNAUTHORIZED)
        allowed, remaining, reset_s = self.bucket.take()
        rate = self.rate_headers(remaining)
        if not allowed:
            return self.too_many(reset_s, rate)
        path = path.removesuffix(".json")
        access = access_reply(self, method, path)  # systems check: see the block at the end
        if access is not None:
            access.headers = {**rate, **(access.headers or {})}
            return access
        if method == "DELETE" and path.startswith("/api/v2/deleted_users/"):
            allowed, _, permanent_reset_s = self.permanent_bucket.take()
            if not allowed:
                return self.too_many(permanent_reset_s, rate)
        with self._lock:
            if path.startswith(TICKET_PATHS):
                reply = self._tickets_route(method, path, query, body)
            else:
                reply = self._route(method, path, query)
        extra = {}
        if reply.status == 200 and path in ("/api/v2/users/search", "/api/v2/deleted_users"):
            extra = {"ratelimit-limit": str(self.bucket.limit), "ratelimit-remaining": str(remaining),
                     "ratelimit-reset": str(max(1, math.ceil(reset_s)))}
        reply.headers = {**rate, **extra, **(reply.headers or {})}
        return reply

    def _authenticated(self, authorization: str) -> bool:
        if not authorization.startswith("Basic "):
            return False
        try:
            decoded = base64.b64decode(authorization.removeprefix("Basic ")).decode()
        except (ValueError, UnicodeDecodeError):
            return False
        username, _, password = decoded.partition(":")
        return f"{username}:{password}" in self.credentials

    def _public(self, user: dict[str, Any]) -> dict[str, Any]:
        return {key: value for key, value in user.items() if key != "state"}

    def _route(self, method: str, path: str, query: dict[str, list[str]]) -> Reply:
        parts = path.strip("/").split("/")
        if method == "GET" and path == "/api/v2/users/me":
            return Reply(200, {"user": {"id": 1, "name": "Erasure Agent", "email": self.agent_email,
                                        "role": "admin"}})
        if method == "GET" and path == "/api/v2/users/search":
            wanted = query.get("query", [""])[0].strip().lower().removeprefix("email:").strip('"')
            found = [self._public(u) for u in self.users.values()
                     if u["state"] == "active" and wanted and wanted in u["email"]]  # partial values match
            return page_of(f"{self.url}{path}.json", query, "users", found, cursor=False)  # offset only
        if method == "GET" and path == "/api/v2/deleted_users":
            found = [self._public(u) for u in self.users.values() if u["state"] != "active"]
            found += [self._public(u) for u in self.permanently_deleted.values()]
            return Reply(200, {"deleted_users": found, "next_page": None, "previous_page": None,
                               "count": len(found)})
        if len(parts) >= 4 and parts[:3] == ["api", "v2", "users"] and parts[3].isdigit():
            user = self.users.get(int(parts[3]))
            if user is None or user["state"] != "active":
                return self.not_found()
            if len(parts) == 4 and method == "GET":
                return Reply(200, {"user": self._public(user)})
            if len(parts) == 4 and method == "DELETE":
                user.update(active=False, state="soft_deleted")
                return Reply(200, {"user": self._public(user)})
            if parts[4:] == ["tickets", "requested"] and method == "GET":
                found = [t for t in self.tickets.values() if t["requester_id"] == user["id"]
                         and not t.get("deleted")]
                found.sort(key=lambda t: int(t["id"]))
                return page_of(f"{self.url}{path}.json", query, "tickets", found)
        if (len(parts) == 4 and parts[:3] == ["api", "v2", "deleted_users"] and parts[3].isdigit()
                and method == "DELETE"):
            user = self.users.get(int(parts[3]))
            if user is None or user["state"] != "soft_deleted":
                return self.not_found()
            del self.users[user["id"]]
            gone = {**USER_FIELDS, "id": user["id"], "name": "Permanently Deleted User", "email": None,
                    "phone": None, "role": user["role"], "active": False,
                    "url": f"{self.url}/api/v2/deleted_users/{user['id']}.json"}
            self.permanently_deleted[user["id"]] = gone
            return Reply(200, {"deleted_user": gone})
        return self.not_found()


# == Systems check (erasure systems check): who the token acts as ======================================
# Additive block. GET /api/v2/users/me answers the token's user; its `role` (end-user, agent, admin)
# and `custom_role_id` say whether it may delete users permanently (admins, and agents in a custom
# role allowed to manage end users). `act_as` is the switch; unset, the token is an admin's.

def act_as(fake: FakeZendesk, role: str, custom_role_id: int | None = None) -> None:
    """The token's user is now of `role` (end-user, agent, admin), with an agent's custom role id."""
    fake.__dict__["me"] = {"role": role, "custom_role_id": custom_role_id}


def access_reply(fake: FakeZendesk, method: str, path: str) -> Reply | None:
    me = fake.__dict__.get("me")
    if me is None or method != "GET" or path != "/api/v2/users/me":
        return None
    return Reply(200, {"user": {"id": 1, "name": "Erasure Agent", "email": fake.agent_email, **me}})
