"""A fake Brevo contacts API that behaves as the documented one does.

`api-key` header (401 `unauthorized` otherwise); POST /v3/contacts creates,
GET and DELETE /v3/contacts/{identifier} with `identifierType`; 204 on delete,
404 `document_not_found` for an unknown contact; `x-sib-ratelimit-limit`,
`-remaining` and `-reset` (seconds) on every response, and 429 with no
Retry-After when the bucket is empty.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any
from urllib.parse import unquote

from pipeline.devstack.fake_server import FakeProcessor, Fault, Reply, TokenBucket

CREATED_AT = "%Y-%m-%dT%H:%M:%S.000Z"
NOT_FOUND = {"code": "document_not_found", "message": "Contact does not exist"}
ERROR_CODES = {401: "unauthorized", 403: "permission_denied", 404: "document_not_found",
               405: "method_not_allowed", 406: "not_acceptable", 422: "unprocessable_entity"}


class FakeBrevo(FakeProcessor):
    name = "brevo"

    def __init__(self, api_keys: set[str], limit_per_window: int = 1000, window_s: float = 1.0,
                 ) -> None:
        super().__init__()
        self.api_keys = set(api_keys)
        self.bucket = TokenBucket(limit_per_window, window_s)
        self._contacts: dict[int, dict[str, Any]] = {}
        self._next_id = 1
        self._lock = threading.Lock()

    def rate_headers(self, remaining: int, reset_s: float) -> dict[str, str]:
        return {
            "x-sib-ratelimit-limit": str(self.bucket.limit),
            "x-sib-ratelimit-remaining": str(remaining),
            "x-sib-ratelimit-reset": str(max(1, math.ceil(reset_s))),
        }

    def fault_reply(self, status: int, reset_s: float) -> Fault:
        if status == 429:
            return Fault(429, {"code": "too_many_requests",
                               "message": "The expected rate limit is exceeded."},
                         self.rate_headers(0, reset_s))
        if status >= 500:
            return Fault(status, {"code": "internal_error", "message": "Internal server error"}, {})
        # A refusal carries one of the codes of Brevo's errorModel.
        code = ERROR_CODES.get(status, "bad_request")
        return Fault(status, {"code": code, "message": code.replace("_", " ")}, {})

    # -- the contacts store ------------------------------------------------
    def _find(self, identifier: str, identifier_type: str) -> int | None:
        field = {"email_id": "email", "phone_id": "SMS", "contact_id": "id",
                 "ext_id": "ext_id"}.get(identifier_type)
        if field is None:
            return None
        for contact_id, contact in self._contacts.items():
            value = contact_id if field == "id" else contact.get(field)
            if value is None:
                continue
            if field == "email" and str(value).lower() == identifier.lower():
                return contact_id
            if str(value) == identifier:
                return contact_id
        return None

    def contact_count(self) -> int:
        with self._lock:
            return len(self._contacts)

    def has_contact(self, email: str) -> bool:
        with self._lock:
            return self._find(email, "email_id") is not None

    def handle(self, method: str, path: str, query: dict[str, list[str]],
               headers: dict[str, str], body: Any) -> Reply:
        if headers.get("api-key") not in self.api_keys:
            return Reply(401, {"code": "unauthorized", "message": "Key not found"})
        allowed, remaining, reset_s = self.bucket.take()
        rate = self.rate_headers(remaining, reset_s)
        if not allowed:
            return Reply(429, {"code": "too_many_requests",
                               "message": "The expected rate limit is exceeded."}, rate)
        with self._lock:
            reply = self._route(method, path, query, body)
        reply.headers = {**rate, **(reply.headers or {})}
        return reply

    def _route(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> Reply:
        if path == "/v3/account" and method == "GET":
            return Reply(200, {"email": "ops@site.example", "firstName": "Site", "lastName": "Operations",
                               "companyName": "Site", "address": {"street": "", "city": "", "zipCode": "",
                                                                  "country": "France"},
                               "plan": [{"type": "free", "credits": 300, "creditsType": "sendLimit"}],
                               "relay": {"enabled": False, "data": {"userName": "", "relay": "",
                                                                    "port": 587}}})
        if path == "/v3/contacts" and method == "POST":
            email = (body or {}).get("email")
            if not email:
                return Reply(400, {"code": "missing_parameter", "message": "email is missing"})
            if self._find(email, "email_id") is not None:
                return Reply(400, {"code": "duplicate_parameter",
                                   "message": "Unable to create contact, email is already "
                                              "associated with another Contact"})
            new_id = self._next_id
            self._next_id += 1
            attributes = (body or {}).get("attributes") or {}
            self._contacts[new_id] = {"email": email, "SMS": attributes.get("SMS"),
                                          "ext_id": (body or {}).get("ext_id"),
                                          "attributes": attributes,
                                          "created_at": time.strftime(CREATED_AT, time.gmtime())}
            return Reply(201, {"id": new_id})
        if path.startswith("/v3/contacts/") and method in ("GET", "DELETE"):
            identifier = unquote(path.removeprefix("/v3/contacts/"))
            default_type = "contact_id" if identifier.isdigit() else "email_id"
            identifier_type = query.get("identifierType", [default_type])[0]
            if identifier_type == "contact_id" and not identifier.isdigit():
                return Reply(400, {"code": "invalid_parameter", "message": "Invalid contact id"})
            key: str | int = int(identifier) if identifier_type == "contact_id" else identifier
            contact_id = self._find(str(key), identifier_type)
            if contact_id is None:
                return Reply(404, NOT_FOUND)
            if method == "GET":
                contact = self._contacts[contact_id]
                return Reply(200, {"id": contact_id, "email": contact["email"],
                                   "attributes": contact["attributes"], "emailBlacklisted": False,
                                   "smsBlacklisted": False, "createdAt": contact["created_at"],
                                   "modifiedAt": contact["created_at"], "listIds": [],
                                   "statistics": {}})
            del self._contacts[contact_id]
            return Reply(204)
        return Reply(404, {"code": "not_found", "message": "Invalid route"})
