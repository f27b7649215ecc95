"""A fake Mailchimp Marketing API (3.0): members per list, search-members, delete-permanent.

HTTP Basic with any user name and the API key as password (or a bearer token);
401 problem+json otherwise, 403 problem+json "User Disabled" for a key in `disabled_keys`.
Errors are `application/problem+json` `{type, title, status, detail, instance}`. Members are addressed by
`md5(lower(email))`. `GET /3.0/search-members?query=` answers `exact_matches`
(the same address, in every list holding it) and `full_search` (partial matches).
`POST .../members/{hash}/actions/delete-permanent` answers 204 and forgets the
member for good: adding the address again to that list is a 400
"Forgotten Email Not Subscribed". `DELETE .../members/{hash}` only archives.

The limit is concurrency, not rate: more than `max_connections` (10) requests in
flight at once get 429 "TooManyRequests" with no wait hint and no rate headers.
`work_s` is how long each request holds its connection, so a test can overlap them.
At exceptionally high volumes Mailchimp throttles with a bare 403 (no JSON body):
`throttle_status` 403 makes the concurrency cap and `throttle(n)` (the next n requests
are throttled) answer that way; 429 (the default) is the documented TooManyRequests problem.

UNCONFIRMED in the reference, so a constructor switch: what delete-permanent
answers for a hash the list does not hold, `unknown_member_status` 404
(ResourceNotFound problem+json, the default) or 204 (a silent no-op).
"""

from __future__ import annotations

import base64
import hashlib
import threading
import time
import uuid
from typing import Any, Literal
from urllib.parse import unquote

from pipeline.devstack.fake_server import FakeProcessor, Fault, Reply

ERROR_DOCS = "https://mailchimp.com/developer/marketing/docs/errors/"
PROBLEM = {"content-type": "application/problem+json"}


def subscriber_hash(email: str) -> str:
    return hashlib.md5(email.lower().encode()).hexdigest()  # Mailchimp's own id scheme


def problem(status: int, title: str, detail: str) -> dict[str, Any]:
    return {"type": ERROR_DOCS, "title": title, "status": status, "detail": detail,
            "instance": str(uuid.uuid4())}


def problem_reply(status: int, title: str, detail: str) -> Reply:
    return Reply(status, problem(status, title, detail), dict(PROBLEM))


def too_many(status: Literal[429, 403] = 429) -> Reply:
    if status == 403:
        return Reply(403, None, {"content-type": "text/html"})
    return problem_reply(429, "TooManyRequests",
                         "You have exceeded the limit of 10 simultaneous connections.")


class FakeMailchimp(FakeProcessor):
    name = "mailchimp"

    def __init__(self, api_keys: set[str], unknown_member_status: Literal[404, 204] = 404,
                 max_connections: int = 10, work_s: float = 0.0,
                 throttle_status: Literal[429, 403] = 429, disabled_keys: set[str] | None = None) -> None:
        super().__init__()
        self.disabled_keys = set(disabled_keys or ())
        self.throttle_status = throttle_status
        self.throttled_ahead = 0
        self.api_keys = set(api_keys)
        self.unknown_member_status = unknown_member_status
        self.max_connections = max_connections
        self.work_s = work_s
        self.lists: dict[str, dict[str, dict[str, Any]]] = {}  # list id -> hash -> member
        self.forgotten: dict[str, set[str]] = {}  # list id -> hashes permanently deleted
        self.in_flight = 0
        self.peak_in_flight = 0
        self.serving = 0
        self.peak_served = 0  # the most requests served at once: never above max_connections
        self._lock = threading.Lock()

    # -- seeding and observing ----------------------------------------------
    def add_list(self, name: str = "Newsletter") -> str:
        list_id = uuid.uuid4().hex[:10]
        with self._lock:
            self.lists[list_id] = {}
            self.forgotten[list_id] = set()
        return list_id

    def add_member(self, list_id: str, email: str, status: str = "subscribed") -> str:
        reply = self._add(list_id, {"email_address": email, "status": status,
                                    "merge_fields": {"FNAME": "Test", "LNAME": "Member"}})
        if reply.status != 200:
            raise ValueError(f"cannot add member: HTTP {reply.status}")
        return subscriber_hash(email)

    def throttle(self, count: int = 1) -> None:
        """Throttle the next `count` requests as if the account were under very high load."""
        with self._lock:
            self.throttled_ahead += count

    def holds(self, email: str) -> list[str]:
        """The lists that still hold the address in any state, archived included."""
        wanted = subscriber_hash(email)
        with self._lock:
            return [list_id for list_id, members in self.lists.items() if wanted in members]

    # -- protocol --------------------------------------------------------------
    def fault_reply(self, status: int, reset_s: float) -> Fault:
        if status == 429:
            reply = too_many()
        else:
            reply = problem_reply(status, "Internal Server Error",
                                  "An unexpected internal error has occurred. Please contact Support.")
        return Fault(reply.status, reply.body, reply.headers or {})

    def _authorised(self, headers: dict[str, str], keys: set[str] | None = None) -> bool:
        keys = self.api_keys if keys is None else keys
        value = headers.get("authorization", "")
        if value.startswith("Bearer "):
            return value.removeprefix("Bearer ") in keys
        if value.startswith("Basic "):
            try:
                decoded = base64.b64decode(value.removeprefix("Basic ")).decode()
            except (ValueError, UnicodeDecodeError):
                return False
            return ":" in decoded and decoded.split(":", 1)[1] in keys
        return False

    def handle(self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str],
               body: Any) -> Reply:
        with self._lock:
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            crowded = self.in_flight > self.max_connections or self.throttled_ahead > 0
            self.throttled_ahead = max(0, self.throttled_ahead - 1)
            if not crowded:
                self.serving += 1
                self.peak_served = max(self.peak_served, self.serving)
        try:
            if crowded:
                return too_many(self.throttle_status)
            if not self._authorised(headers):
                return problem_reply(401, "API Key Invalid", "Your API key may be invalid, or you've "
                                     "attempted to access the wrong datacenter.")
            if self._authorised(headers, self.disabled_keys):
                return problem_reply(403, "User Disabled", "This account has been disabled.")
            if self.work_s:
                time.sleep(self.work_s)
            with self._lock:
                return self._route(method, path, query, body)
        finally:
            with self._lock:
                self.in_flight -= 1
                self.serving -= 0 if crowded else 1

    def _add(self, list_id: str, body: Any) -> Reply:
        email = str((body or {}).get("email_address") or "")
        if "@" not in email:
            return problem_reply(400, "Invalid Resource", "Please provide a valid email address.")
        members = self.lists.get(list_id)
        if members is None:
            return problem_reply(404, "Resource Not Found", "The requested resource could not be found.")
        key = subscriber_hash(email)
        if key in self.forgotten[list_id]:
            return problem_reply(400, "Forgotten Email Not Subscribed",
                                 f"{email} was permanently deleted and cannot be re-imported. "
                                 "The contact must re-subscribe to get back on the list.")
        if key in members and members[key]["status"] != "archived":
            return problem_reply(400, "Member Exists", f"{email} is already a list member.")
        member = {"id": key, "email_address": email, "unique_email_id": uuid.uuid4().hex[:10],
                  "status": (body or {}).get("status", "subscribed"), "list_id": list_id,
                  "merge_fields": (body or {}).get("merge_fields") or {}}
        members[key] = member
        return Reply(200, member)

    def _route(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> Reply:
        parts = [unquote(p) for p in path.strip("/").split("/")]
        if parts[:1] != ["3.0"]:
            return problem_reply(404, "Resource Not Found", "Invalid path.")
        parts = parts[1:]
        if method == "GET" and parts == ["ping"]:
            return Reply(200, {"health_status": "Everything's Chimpy!"})
        if method == "GET" and parts == ["search-members"]:
            text = query.get("query", [""])[0].strip().lower()
            only = query.get("list_id", [None])[0]
            exact, partial = [], []
            for list_id, members in self.lists.items():
                if only is not None and list_id != only:
                    continue
                for member in members.values():
                    address = member["email_address"].lower()
                    if text and address == text:
                        exact.append(member)
                    elif text and text in address:
                        partial.append(member)
            return Reply(200, {"exact_matches": {"members": exact, "total_items": len(exact)},
                               "full_search": {"members": partial, "total_items": len(partial)}})
        if len(parts) >= 3 and parts[0] == "lists" and parts[2] == "members":
            list_id = parts[1]
            if list_id not in self.lists:
                return problem_reply(404, "Resource Not Found", "The requested resource could not be found.")
            if method == "POST" and len(parts) == 3:
                return self._add(list_id, body)
            key = parts[3] if len(parts) > 3 else ""
            found = self.lists[list_id].get(key)
            if method == "POST" and parts[4:] == ["actions", "delete-permanent"]:
                if found is None:
                    if self.unknown_member_status == 204:
                        return Reply(204)
                    return problem_reply(404, "Resource Not Found",
                                         "The requested resource could not be found.")
                del self.lists[list_id][key]
                self.forgotten[list_id].add(key)
                return Reply(204)
            if len(parts) == 4 and method in ("GET", "DELETE"):
                if found is None:
                    return problem_reply(404, "Resource Not Found",
                                         "The requested resource could not be found.")
                if method == "GET":
                    return Reply(200, found)
                found["status"] = "archived"  # archiving keeps the data: not an erasure
                return Reply(204)
        return problem_reply(404, "Resource Not Found", "The requested resource could not be found.")
