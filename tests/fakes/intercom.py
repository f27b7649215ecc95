"""A fake Intercom (API 2.x contacts): bearer token, search, delete, error.list, 10-second windows."""

from __future__ import annotations

import math
import threading
import time
import uuid
from typing import Any

from pipeline.devstack.fake_server import FakeProcessor, Fault, Reply, TokenBucket


def error_list(code: str, message: str) -> dict[str, Any]:
    return {"type": "error.list", "request_id": str(uuid.uuid4()),
            "errors": [{"code": code, "message": message}]}


class FakeIntercom(FakeProcessor):
    name = "intercom"

    def __init__(self, tokens: set[str], limit_per_window: int = 1000, window_s: float = 10.0) -> None:
        super().__init__()
        self.tokens = set(tokens)
        self.bucket = TokenBucket(limit_per_window, window_s)
        self.contacts: dict[str, dict[str, Any]] = {}
        self.deleted: dict[str, dict[str, Any]] = {}  # kept 7 days by Intercom: recoverable
        self.merged: dict[str, str] = {}  # merged contact id -> the canonical contact's id
        self.unsearchable: set[str] = set()  # created "a few minutes" ago: search misses them
        self.merged_delete_410 = True  # UNCONFIRMED: DELETE of a merged contact as GET answers it
        self._lock = threading.Lock()

    def add_contact(self, email: str) -> str:
        contact_id = uuid.uuid4().hex[:24]
        with self._lock:
            self.contacts[contact_id] = {"type": "contact", "id": contact_id, "email": email, "role": "user"}
        return contact_id

    def has_contact(self, email: str) -> bool:
        with self._lock:
            return any(c["email"].lower() == email.lower() for c in self.contacts.values())

    def rate_headers(self, remaining: int, reset_s: float) -> dict[str, str]:
        return {"X-RateLimit-Limit": str(self.bucket.limit), "X-RateLimit-Remaining": str(remaining),
                "X-RateLimit-Reset": str(math.ceil(time.time() + reset_s))}

    def fault_reply(self, status: int, reset_s: float) -> Fault:
        if status == 429:
            return Fault(429, error_list("rate_limit_exceeded", "Exceeded rate limit of 167 in 10_seconds"),
                         self.rate_headers(0, reset_s))
        return Fault(status, error_list("server_error", "Server Error"), {})

    def handle(self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str],
               body: Any) -> Reply:
        if headers.get("authorization", "").removeprefix("Bearer ") not in self.tokens:
            return Reply(401, error_list("unauthorized", "Access Token Invalid"))
        allowed, remaining, reset_s = self.bucket.take()
        rate = self.rate_headers(remaining, reset_s)
        if not allowed:
            return Reply(429, error_list("rate_limit_exceeded", "Exceeded rate limit"), rate)
        with self._lock:
            reply = self._route(method, path, body)
        reply.headers = {**rate, **(reply.headers or {})}
        return reply

    def _route(self, method: str, path: str, body: Any) -> Reply:
        if method == "GET" and path == "/me":
            return Reply(200, {"type": "admin", "id": "1", "email": "ops@site.example"})
        if method == "POST" and path == "/contacts/search":
            query = (body or {}).get("query") or {}
            if query.get("field") != "email" or query.get("operator") != "=":
                return Reply(400, error_list("parameter_invalid", "unsupported query"))
            value = str(query.get("value", "")).lower()
            found = [c for c in self.contacts.values() if c["email"].lower() == value
                     and c["id"] not in self.unsearchable]
            return Reply(200, {"type": "list", "data": found, "total_count": len(found)})
        if method in ("GET", "DELETE") and path.removeprefix("/contacts/") in self.merged:
            merged = self._merged_reply(method, path.removeprefix("/contacts/"))
            if merged is not None:
                return merged
        if method == "DELETE" and path.startswith("/contacts/"):
            contact_id = path.removeprefix("/contacts/")
            contact = self.contacts.pop(contact_id, None)
            if contact is None:
                return Reply(404, error_list("not_found", "Contact Not Found"))
            self.deleted[contact_id] = contact
            return Reply(200, {"id": contact_id, "external_id": None, "type": "contact", "deleted": True})
        return Reply(404, error_list("not_found", "Resource Not Found"))

    # -- Merged contacts and the search's indexing delay ----------------------------------------
    # The 2.16 contract: `GET /contacts/{id}` of a contact merged into another answers 410
    # `contact_merged` with `Link: </contacts/{canonical id}>; rel="canonical"`; merged contacts
    # are left out of search, and "a newly created contact may not be searchable for a few
    # minutes" (`unsearchable` until `index_now()`). DELETE of a merged contact is not in the
    # contract: it answers as GET does unless `merged_delete_410` is False (then 404).
    def merge(self, email: str, into: str) -> str:
        """A contact with `email`, merged into the contact `into`; its id."""
        contact_id = self.add_contact(email)
        with self._lock:
            self.contacts.pop(contact_id)
            self.merged[contact_id] = into
        return contact_id

    def add_recent_contact(self, email: str) -> str:
        contact_id = self.add_contact(email)
        with self._lock:
            self.unsearchable.add(contact_id)
        return contact_id

    def index_now(self) -> None:
        with self._lock:
            self.unsearchable.clear()

    def _merged_reply(self, method: str, contact_id: str) -> Reply | None:
        if method == "DELETE" and not self.merged_delete_410:
            return Reply(404, error_list("not_found", "Contact Not Found"))
        return Reply(410, error_list("contact_merged", "Contact was merged into another contact"),
                     {"Link": f'</contacts/{self.merged[contact_id]}>; rel="canonical"'})
