"""A fake HubSpot CRM contacts API (v3) that behaves as the documented one does.

`Authorization: Bearer <private app token>` (401 `INVALID_AUTHENTICATION` otherwise);
`POST /crm/v3/objects/contacts/search` with `filterGroups` (email `EQ`) answers
`{"total", "results": [{"id", "properties"}]}`; `POST /crm/v3/objects/contacts/gdpr-delete`
takes `{"objectId": "123"}` or `{"objectId": "a@b.c", "idProperty": "email"}` and answers
204 with no body. By e-mail it answers 204 even when no contact has that address: the
address is blocklisted. A deleted contact leaves the CRM at once and waits for the purge
HubSpot runs within 30 days (`purge()` runs it now).

Rate limits: `X-HubSpot-RateLimit-Daily` and `-Daily-Remaining` on every response
(documented); a ten-secondly rolling limit and a daily limit, each answering 429 with
HubSpot's JSON body and its `policyName` (`SECONDLY` or `DAILY`).

UNCONFIRMED, so switches of the constructor:
- `interval_headers`: the secondly/interval headers (`X-HubSpot-RateLimit-Max`,
  `-Remaining`, `-Interval-Milliseconds`, `-Secondly`, `-Secondly-Remaining`);
- `retry_after`: a `Retry-After` header (seconds) on a SECONDLY 429;
- `unknown_id_status`: what gdpr-delete answers for an unknown numeric id (204 or 404).
"""

from __future__ import annotations

import math
import threading
import uuid
from typing import Any, Literal

from pipeline.devstack.fake_server import FakeProcessor, Fault, Reply, TokenBucket

UNAUTHORIZED = {
    "status": "error",
    "message": "Authentication credentials not found. This API supports OAuth 2.0 authentication and you "
               "can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
    "category": "INVALID_AUTHENTICATION",
}
SECONDLY_MESSAGE = "You have reached your ten secondly rolling limit."
DAILY_MESSAGE = "You have reached your daily limit."


def error(message: str, category: str) -> dict[str, Any]:
    return {"status": "error", "message": message, "correlationId": str(uuid.uuid4()), "category": category}


def rate_limit_body(policy: Literal["SECONDLY", "DAILY"]) -> dict[str, Any]:
    return {"status": "error", "message": SECONDLY_MESSAGE if policy == "SECONDLY" else DAILY_MESSAGE,
            "errorType": "RATE_LIMIT", "correlationId": str(uuid.uuid4()), "policyName": policy,
            "requestId": uuid.uuid4().hex}


class FakeHubSpot(FakeProcessor):
    name = "hubspot"

    def __init__(self, tokens: set[str], limit_per_window: int = 190, window_s: float = 10.0,
                 daily_limit: int = 1_000_000, interval_headers: bool = False, retry_after: bool = False,
                 unknown_id_status: Literal[204, 404] = 204) -> None:
        super().__init__()
        self.tokens = set(tokens)
        self.bucket = TokenBucket(limit_per_window, window_s)
        self.daily_limit = daily_limit
        self.daily_used = 0
        self.interval_headers = interval_headers
        self.retry_after = retry_after
        self.unknown_id_status = unknown_id_status
        self.contacts: dict[str, dict[str, Any]] = {}
        self.awaiting_purge: dict[str, dict[str, Any]] = {}  # out of the CRM, purged within 30 days
        self.blocklist: set[str] = set()
        self._next_id = 101
        self._lock = threading.Lock()

    # -- the store, for seeding and observing -----------------------------
    def add_contact(self, email: str) -> str:
        with self._lock:
            contact_id = str(self._next_id)
            self._next_id += 1
            self.contacts[contact_id] = {"id": contact_id, "email": email.lower()}
        return contact_id

    def has_contact(self, email: str) -> bool:
        with self._lock:
            return any(c["email"] == email.lower() for c in self.contacts.values())

    def awaits_purge(self, email: str) -> bool:
        with self._lock:
            return any(c["email"] == email.lower() for c in self.awaiting_purge.values())

    def is_blocklisted(self, email: str) -> bool:
        with self._lock:
            return email.lower() in self.blocklist

    def purge(self) -> int:
        """Run the GDPR purge HubSpot performs up to 30 days after the deletion."""
        with self._lock:
            count = len(self.awaiting_purge)
            self.awaiting_purge.clear()
            return count

    def exhaust_daily(self) -> None:
        with self._lock:
            self.daily_used = self.daily_limit

    def reset_daily(self) -> None:
        with self._lock:
            self.daily_used = 0

    # -- rate limits ---------------------------------------------------------
    def rate_headers(self, remaining: int, reset_s: float) -> dict[str, str]:
        headers = {"X-HubSpot-RateLimit-Daily": str(self.daily_limit),
                   "X-HubSpot-RateLimit-Daily-Remaining": str(max(0, self.daily_limit - self.daily_used))}
        if self.interval_headers:
            headers.update({
                "X-HubSpot-RateLimit-Max": str(self.bucket.limit),
                "X-HubSpot-RateLimit-Remaining": str(remaining),
                "X-HubSpot-RateLimit-Interval-Milliseconds": str(int(self.bucket.window_s * 1000)),
                "X-HubSpot-RateLimit-Secondly": str(math.ceil(self.bucket.limit / self.bucket.window_s)),
                "X-HubSpot-RateLimit-Secondly-Remaining": str(min(remaining, math.ceil(
                    self.bucket.limit / self.bucket.window_s))),
            })
        return headers

    def secondly_429(self, reset_s: float) -> tuple[dict[str, Any], dict[str, str]]:
        headers = self.rate_headers(0, reset_s)
        if self.retry_after:
            headers["Retry-After"] = str(max(1, math.ceil(reset_s)))
        return rate_limit_body("SECONDLY"), headers

    def fault_reply(self, status: int, reset_s: float) -> Fault:
        if status == 429:
            body, headers = self.secondly_429(reset_s)
            return Fault(429, body, headers)
        return Fault(status, error("internal error", "INTERNAL_ERROR"), {})

    def handle(self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str],
               body: Any) -> Reply:
        if headers.get("authorization", "").removeprefix("Bearer ") not in self.tokens:
            return Reply(401, {**UNAUTHORIZED, "correlationId": str(uuid.uuid4())})
        with self._lock:
            daily_exhausted = self.daily_used >= self.daily_limit
            if not daily_exhausted:
                self.daily_used += 1
        if daily_exhausted:
            return Reply(429, rate_limit_body("DAILY"), self.rate_headers(0, 0))
        allowed, remaining, reset_s = self.bucket.take()
        if not allowed:
            body429, headers429 = self.secondly_429(reset_s)
            return Reply(429, body429, headers429)
        with self._lock:
            reply = access_reply(self, method, path, headers)  # systems check: see the block at the end
            if reply is None:
                reply = self._route(method, path, query, body)
            rate = self.rate_headers(remaining, reset_s)
        reply.headers = {**rate, **(reply.headers or {})}
        return reply

    def _route(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> Reply:
        if method == "GET" and path == "/crm/v3/objects/contacts":
            limit = int(query.get("limit", ["10"])[0])
            found = list(self.contacts.values())[:limit]
            return Reply(200, {"results": [self._public(c) for c in found]})
        if method == "POST" and path == "/crm/v3/objects/contacts/search":
            return self._search(body)
        if method == "POST" and path == "/crm/v3/objects/contacts/gdpr-delete":
            return self._gdpr_delete(body)
        return Reply(404, error("Resource not found", "OBJECT_NOT_FOUND"))

    @staticmethod
    def _public(contact: dict[str, Any]) -> dict[str, Any]:
        return {"id": contact["id"], "properties": {"email": contact["email"], "hs_object_id": contact["id"]},
                "createdAt": "2026-01-05T10:00:00.000Z", "updatedAt": "2026-01-05T10:00:00.000Z",
                "archived": False}

    def _search(self, body: Any) -> Reply:
        groups = (body or {}).get("filterGroups") or []
        wanted: list[str] = []
        for group in groups:
            for item in group.get("filters") or []:
                if item.get("propertyName") != "email" or item.get("operator") != "EQ":
                    return Reply(400, error("this fake searches by email EQ only", "VALIDATION_ERROR"))
                wanted.append(str(item.get("value", "")).lower())
        if not wanted:
            return Reply(400, error("filterGroups must hold an email EQ filter", "VALIDATION_ERROR"))
        found = [self._public(c) for c in self.contacts.values() if c["email"] in wanted]
        return Reply(200, {"total": len(found), "results": found})

    def _gdpr_delete(self, body: Any) -> Reply:
        object_id = str((body or {}).get("objectId") or "")
        id_property = (body or {}).get("idProperty")
        if not object_id:
            return Reply(400, error("objectId is required", "VALIDATION_ERROR"))
        if id_property == "email":
            email = object_id.lower()
            for contact_id, contact in list(self.contacts.items()):
                if contact["email"] == email:
                    self.awaiting_purge[contact_id] = self.contacts.pop(contact_id)
            self.blocklist.add(email)  # "added to a blocklist" whether or not a contact had it
            return Reply(204)
        if id_property not in (None, "hs_object_id"):
            return Reply(400, error(f"unsupported idProperty {id_property}", "VALIDATION_ERROR"))
        if object_id not in self.contacts:
            if self.unknown_id_status == 404:
                return Reply(404, error("Object not found", "OBJECT_NOT_FOUND"))
            return Reply(204)
        contact = self.awaiting_purge[object_id] = self.contacts.pop(object_id)
        self.blocklist.add(contact["email"])
        return Reply(204)


# == Systems check (erasure systems check): a private app's scopes ==================================
# Additive block. A call the token's scopes do not allow answers 403 with category MISSING_SCOPES
# and the scopes it requires in errors[].context.requiredGranularScopes (developers.hubspot.com/scopes;
# the body shape as HubSpot's community threads quote it). Reading contacts (list, search) needs
# crm.objects.contacts.read, gdpr-delete needs crm.objects.contacts.write (hubspot/SOURCE.md facts 1
# and 5). `grant_token_scopes` is the switch; a token not given one holds both.

CONTACT_SCOPES = ("crm.objects.contacts.read", "crm.objects.contacts.write")


def grant_token_scopes(fake: FakeHubSpot, token: str, scopes: list[str]) -> None:
    fake.__dict__.setdefault("token_scopes", {})[token] = set(scopes)


def access_reply(fake: FakeHubSpot, method: str, path: str, headers: dict[str, str]) -> Reply | None:
    if not path.startswith("/crm/v3/objects/contacts"):
        return None
    token = headers.get("authorization", "").removeprefix("Bearer ")
    granted = fake.__dict__.get("token_scopes", {}).get(token, set(CONTACT_SCOPES))
    needed = CONTACT_SCOPES[1] if path.endswith("/gdpr-delete") else CONTACT_SCOPES[0]
    if needed in granted:
        return None
    message = ("This app hasn't been granted all required scopes to make this call. Read more about "
               "required scopes here: https://developers.hubspot.com/scopes.")
    return Reply(403, {**error(message, "MISSING_SCOPES"),
                       "errors": [{"message": "One or more of the following scopes are required.",
                                   "context": {"requiredGranularScopes": [needed]}}],
                       "links": {"scopes": "https://developers.hubspot.com/scopes"}})
