"""A fake Mailjet contacts API: v3 lookup by address or ID, v4 delete that anonymises at once.

HTTP Basic with the public API key as user and the private key as password; 401
otherwise. `GET /v3/REST/contact/{email or ID}` answers `{"Count","Data","Total"}`.
`DELETE /v4/contacts/{id}` answers 200 with the contact anonymised on the spot
(Email `\\x<sha1>@domain.invalid`, Name "Anonymized"); the anonymised record keeps
its ID and settings for 30 days, then is purged. The fake's clock can be moved on
(`advance(seconds)` or the `/__fake__/clock` control) to see the purge. The address
can be uploaded again afterwards (`POST /v3/REST/contact`): a new contact.

Error bodies use the v3 shape `{"ErrorInfo","ErrorMessage","StatusCode"}`; the
connector relies on status codes only.

UNCONFIRMED in the reference, so constructor switches:
- `lookup_missing`: an unknown address at the lookup is "404" (default) or "empty"
  (200 with `Count: 0`);
- `delete_missing_status`: DELETE of an id that is unknown or already anonymised
  answers 404 (default) or 200 (a no-op);
- `delete_status`: a successful DELETE answers 200 with the anonymised contact (default: the
  GDPR guide) or 204 with no body (the errors page: "returned when a DELETE request was
  successful"); the two pages disagree;
- rate limits: a 429 with no headers at all, from injected faults or, when
  `limit_per_window` is set, from a request counter.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from typing import Any, Literal
from urllib.parse import unquote

from pipeline.devstack.fake_server import FakeProcessor, Fault, Reply, TokenBucket

RETENTION_S = 30 * 24 * 3600


def mailjet_error(status: int, message: str) -> dict[str, Any]:
    return {"ErrorInfo": "", "ErrorMessage": message, "StatusCode": status}


def anonymised_email(email: str) -> str:
    return f"\\x{hashlib.sha1(email.lower().encode()).hexdigest()}@domain.invalid"


class FakeMailjet(FakeProcessor):
    name = "mailjet"

    def __init__(self, credentials: set[tuple[str, str]],
                 lookup_missing: Literal["404", "empty"] = "404",
                 delete_missing_status: Literal[404, 200] = 404,
                 delete_status: Literal[200, 204] = 200,
                 limit_per_window: int | None = None, window_s: float = 1.0) -> None:
        super().__init__()
        self.credentials = set(credentials)
        self.lookup_missing = lookup_missing
        self.delete_missing_status = delete_missing_status
        self.delete_status = delete_status
        self.bucket = TokenBucket(limit_per_window, window_s) if limit_per_window else None
        self.contacts: dict[int, dict[str, Any]] = {}
        self.anonymised_at: dict[int, float] = {}
        self.clock_offset_s = 0.0
        self._next_id = 1_000_001
        self._lock = threading.Lock()

    # -- clock -------------------------------------------------------------------
    def now(self) -> float:
        return time.time() + self.clock_offset_s

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.clock_offset_s += seconds
            self._purge()

    def _purge(self) -> None:
        now = self.now()
        for contact_id, at in list(self.anonymised_at.items()):
            if now - at >= RETENTION_S:
                del self.anonymised_at[contact_id]
                self.contacts.pop(contact_id, None)

    # -- seeding and observing ----------------------------------------------------
    def add_contact(self, email: str, name: str = "Test Contact") -> int:
        with self._lock:
            reply = self._create({"Email": email, "Name": name})
        if reply.status != 201:
            raise ValueError(f"cannot add contact: HTTP {reply.status}")
        return int(reply.body["Data"][0]["ID"])

    def has_contact(self, email: str) -> bool:
        """A contact still carrying this address (anonymised records do not)."""
        with self._lock:
            self._purge()
            return any(str(c["Email"]).lower() == email.lower() for c in self.contacts.values())

    def record(self, contact_id: int) -> dict[str, Any] | None:
        with self._lock:
            self._purge()
            contact = self.contacts.get(contact_id)
            return dict(contact) if contact else None

    # -- protocol --------------------------------------------------------------------
    def fault_reply(self, status: int, reset_s: float) -> Fault:
        if status == 429:
            return Fault(429, mailjet_error(429, "Too many requests"), {})
        return Fault(status, mailjet_error(status, "Internal Server Error"), {})

    def control(self, action: str, body: Any) -> Reply:
        if action == "clock":
            self.advance(float(body.get("advance_s", 0)))
            return Reply(204)
        return super().control(action, body)

    def _authorised(self, headers: dict[str, str]) -> bool:
        value = headers.get("authorization", "")
        if not value.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(value.removeprefix("Basic ")).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return (user, password) in self.credentials

    def handle(self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str],
               body: Any) -> Reply:
        if not self._authorised(headers):
            return Reply(401, mailjet_error(401, "API key authentication/authorization failure. You may be "
                                                 "unauthorized to access the API or your API key may be "
                                                 "expired."))
        if self.bucket is not None and not self.bucket.take()[0]:
            return Reply(429, mailjet_error(429, "Too many requests"))
        with self._lock:
            self._purge()
            return self._route(method, path, query, body)

    def _find(self, key: str) -> dict[str, Any] | None:
        if key.isdigit():
            return self.contacts.get(int(key))
        return next((c for c in self.contacts.values() if str(c["Email"]).lower() == key.lower()), None)

    def _create(self, body: Any) -> Reply:
        email = str((body or {}).get("Email") or "")
        if "@" not in email:
            return Reply(400, mailjet_error(400, "Invalid email address"))
        if self._find(email) is not None:
            return Reply(400, mailjet_error(400, f"MJ18 A Contact resource with value \"{email}\" for Email "
                                                 "already exists."))
        contact_id = self._next_id
        self._next_id += 1
        contact = {"ID": contact_id, "Email": email, "Name": str((body or {}).get("Name") or ""),
                   "IsExcludedFromCampaigns": bool((body or {}).get("IsExcludedFromCampaigns", False)),
                   "CreatedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.now())),
                   "DeliveredCount": 0, "IsOptInPending": False, "IsSpamComplaining": False}
        self.contacts[contact_id] = contact
        return Reply(201, {"Count": 1, "Data": [dict(contact)], "Total": 1})

    def _route(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> Reply:
        if path == "/v3/REST/contact":
            if method == "POST":
                return self._create(body)
            if method == "GET":
                limit = int(query.get("Limit", ["10"])[0])
                data = [dict(c) for c in self.contacts.values()][:limit]
                return Reply(200, {"Count": len(data), "Data": data, "Total": len(self.contacts)})
        if method == "GET" and path.startswith("/v3/REST/contact/"):
            contact = self._find(unquote(path.removeprefix("/v3/REST/contact/")))
            if contact is None:
                if self.lookup_missing == "empty":
                    return Reply(200, {"Count": 0, "Data": [], "Total": 0})
                return Reply(404, mailjet_error(404, "Object not found"))
            return Reply(200, {"Count": 1, "Data": [dict(contact)], "Total": 1})
        if method == "DELETE" and path.startswith("/v4/contacts/"):
            key = path.removeprefix("/v4/contacts/")
            contact = self.contacts.get(int(key)) if key.isdigit() else None
            if contact is None or int(key) in self.anonymised_at:
                if self.delete_missing_status == 200:
                    return Reply(200, dict(contact) if contact else None)
                return Reply(404, mailjet_error(404, "Object not found"))
            contact.update(Email=anonymised_email(str(contact["Email"])), Name="Anonymized")
            self.anonymised_at[contact["ID"]] = self.now()
            return Reply(204) if self.delete_status == 204 else Reply(200, dict(contact))
        return Reply(404, mailjet_error(404, "Object not found"))
