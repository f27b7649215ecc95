"""A fake Stripe (customers, invoices, charges) that behaves as the documented API does.

Secret key as `Authorization: Bearer sk_...` or HTTP Basic (key as the user name);
401 with Stripe's error envelope otherwise. `GET /v1/customers?email=` lists the
live customers sharing that exact e-mail (several are possible; the filter is
case-sensitive, as Stripe documents it), newest first, paginated with
`limit`/`starting_after`/`has_more`. `DELETE /v1/customers/{id}` answers 200
`{"id","object":"customer","deleted":true}` and keeps a tombstone: the deleted
customer stays retrievable with `deleted: true`, its invoices and charges stay.
An unknown id gives 404 `resource_missing`. Every answer carries `Request-Id`.
A 429 carries `Stripe-Should-Retry: true`.

UNCONFIRMED in the reference, so constructor switches:
- `retry_after_on_429`: whether a 429 also carries `Retry-After` (seconds);
- `repeat_delete`: what a second DELETE of a deleted customer gives, "404"
  (`resource_missing`) or "tombstone" (200 with the retained `deleted: true` object).
"""

from __future__ import annotations

import base64
import math
import threading
import time
import uuid
from typing import Any, Literal

from pipeline.devstack.fake_server import FakeProcessor, Fault, Reply, TokenBucket


def stripe_error(kind: str, message: str, code: str | None = None, param: str | None = None,
                 ) -> dict[str, Any]:
    error: dict[str, Any] = {"type": kind, "message": message}
    if code:
        error["code"] = code
        error["doc_url"] = f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}"
    if param:
        error["param"] = param
    return {"error": error}


# The rest of what Stripe's `charge` and `invoice` objects always carry (their `required` lists in
# contracts/stripe.openapi.yaml); values of a plain paid card charge and a paid one-off invoice.
CHARGE_FIELDS: dict[str, Any] = {
    "amount_refunded": 0, "captured": True, "disputed": False, "refunded": False,
    "livemode": False, "metadata": {}, "billing_details": {"address": None, "email": None, "name": None,
                                                           "phone": None}}


def invoice_fields(invoice_id: str, created: int, status: str, total: int) -> dict[str, Any]:
    paid = status == "paid"
    return {
        "amount_due": total, "amount_paid": total if paid else 0, "amount_remaining": 0 if paid else total,
        "amount_shipping": 0, "attempt_count": 1 if paid else 0, "attempted": paid,
        "automatic_tax": {"enabled": False, "status": None}, "collection_method": "charge_automatically",
        "default_tax_rates": [], "livemode": False, "paid": paid, "paid_out_of_band": False,
        "payment_settings": {"default_mandate": None, "payment_method_options": None,
                             "payment_method_types": None},
        "period_end": created, "period_start": created, "post_payment_credit_notes_amount": 0,
        "pre_payment_credit_notes_amount": 0, "starting_balance": 0,
        "status_transitions": {"finalized_at": created, "marked_uncollectible_at": None,
                               "paid_at": created if paid else None, "voided_at": None},
        "subtotal": total, "total_tax_amounts": [],
        "lines": {"object": "list", "data": [], "has_more": False, "url": f"/v1/invoices/{invoice_id}/lines"}}


def _new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:14]}"


class FakeStripe(FakeProcessor):
    name = "stripe"

    def __init__(self, secret_keys: set[str], retry_after_on_429: bool = True,
                 repeat_delete: Literal["404", "tombstone"] = "404",
                 limit_per_s: int = 25) -> None:
        super().__init__()
        self.secret_keys = set(secret_keys)
        self.retry_after_on_429 = retry_after_on_429
        self.repeat_delete = repeat_delete
        self.bucket = TokenBucket(limit_per_s, 1.0)
        self.customers: dict[str, dict[str, Any]] = {}
        self.invoices: dict[str, dict[str, Any]] = {}
        self.charges: dict[str, dict[str, Any]] = {}
        self.delete_calls = 0
        self._lock = threading.Lock()
        self.redaction = RedactionJobs(self)

    # -- seeding and observing ----------------------------------------------
    def add_customer(self, email: str, name: str = "Test Customer", created: int | None = None) -> str:
        customer_id = _new_id("cus")
        with self._lock:
            self.customers[customer_id] = {
                "id": customer_id, "object": "customer", "email": email, "name": name,
                "created": created if created is not None else int(time.time()), "livemode": False,
                "invoice_settings": {"default_payment_method": "pm_card_visa"}}
        return customer_id

    def add_invoice(self, customer_id: str, created: int, status: str = "paid", total: int = 1200) -> str:
        invoice_id = _new_id("in")
        with self._lock:
            email = self.customers[customer_id]["email"]
            self.invoices[invoice_id] = {"id": invoice_id, "object": "invoice", "customer": customer_id,
                                         "customer_email": email, "created": created, "status": status,
                                         "total": total, "currency": "eur",
                                         **invoice_fields(invoice_id, created, status, total)}
        return invoice_id

    def add_charge(self, customer_id: str, created: int, amount: int = 1200) -> str:
        charge_id = _new_id("ch")
        with self._lock:
            self.charges[charge_id] = {"id": charge_id, "object": "charge", "customer": customer_id,
                                       "created": created, "amount": amount, "currency": "eur",
                                       "paid": True, "status": "succeeded",
                                       "payment_method_details": {"card": {"last4": "4242"}},
                                       **CHARGE_FIELDS, "amount_captured": amount}
        return charge_id

    def live_customers(self, email: str) -> list[str]:
        with self._lock:
            return [c["id"] for c in self.customers.values()
                    if not c.get("deleted") and str(c.get("email", "")).lower() == email.lower()]

    def has_customer(self, email: str) -> bool:
        return bool(self.live_customers(email))

    # -- protocol --------------------------------------------------------------
    def _rate_limited(self, reset_s: float, should_retry: bool = True) -> Fault:
        headers = {"Stripe-Should-Retry": "true" if should_retry else "false",
                   "Request-Id": f"req_{uuid.uuid4().hex[:14]}"}
        if self.retry_after_on_429:
            headers["Retry-After"] = str(max(1, math.ceil(reset_s)))
        return Fault(429, stripe_error("invalid_request_error",
                                       "Request rate limit exceeded. Learn more about rate limits here "
                                       "https://stripe.com/docs/rate-limits.", code="rate_limit"), headers)

    def fault_reply(self, status: int, reset_s: float) -> Fault:
        if status == 429:
            return self._rate_limited(reset_s)
        return Fault(status, stripe_error("api_error", "An unknown error occurred"),
                     {"Stripe-Should-Retry": "true", "Request-Id": f"req_{uuid.uuid4().hex[:14]}"})

    def control(self, action: str, body: Any) -> Reply:
        if action == "faults" and "should_retry" in body:
            # A refusal Stripe marks as not to be retried, whatever its status.
            status = int(body["status"])
            fault = Fault(status, stripe_error("invalid_request_error", "Request refused"),
                          {"Stripe-Should-Retry": "true" if body["should_retry"] else "false"})
            with self.state.lock:
                for _ in range(int(body.get("count", 1))):
                    self.state.faults.append(fault)
            return Reply(204)
        return super().control(action, body)

    def extra_headers(self) -> dict[str, str]:
        return {"Request-Id": f"req_{uuid.uuid4().hex[:14]}", "Stripe-Version": "2024-06-20"}

    def _authorised(self, headers: dict[str, str]) -> bool:
        value = headers.get("authorization", "")
        if value.startswith("Bearer "):
            return value.removeprefix("Bearer ") in self.secret_keys
        if value.startswith("Basic "):
            try:
                decoded = base64.b64decode(value.removeprefix("Basic ")).decode()
            except (ValueError, UnicodeDecodeError):
                return False
            return decoded.split(":", 1)[0] in self.secret_keys
        return False

    def handle(self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str],
               body: Any) -> Reply:
        if not self._authorised(headers):
            return Reply(401, stripe_error(
                "invalid_request_error", "Invalid API Key provided: sk_test_********************"))
        allowed, _, reset_s = self.bucket.take()
        if not allowed:
            fault = self._rate_limited(reset_s)
            return Reply(fault.status, fault.body, fault.headers)
        access = access_reply(self, method, path, query, headers)  # systems check: see the block at the end
        if access is not None:
            return access
        with self._lock:
            if path.startswith(REDACTION_JOBS):
                return self.redaction.route(method, path, query, body or {}, headers)
            return self._route(method, path, query)

    @staticmethod
    def _page(items: list[dict[str, Any]], query: dict[str, list[str]], url: str) -> Reply:
        try:
            limit = int(query.get("limit", ["10"])[0])
        except ValueError:
            return Reply(400, stripe_error("invalid_request_error", "Invalid integer", param="limit"))
        if not 1 <= limit <= 100:
            return Reply(400, stripe_error("invalid_request_error",
                                           "This value must be between 1 and 100", param="limit"))
        items = sorted(items, key=lambda i: (-int(i["created"]), i["id"]))
        after = query.get("starting_after", [None])[0]
        if after is not None:
            ids = [i["id"] for i in items]
            if after not in ids:
                return Reply(400, stripe_error("invalid_request_error", "No such object",
                                               code="resource_missing", param="starting_after"))
            items = items[ids.index(after) + 1:]
        return Reply(200, {"object": "list", "url": url, "has_more": len(items) > limit,
                           "data": items[:limit]})

    def _route(self, method: str, path: str, query: dict[str, list[str]]) -> Reply:
        if method == "GET" and path == "/v1/customers":
            email = query.get("email", [None])[0]
            found = [c for c in self.customers.values() if not c.get("deleted")
                     and (email is None or c.get("email") == email)]  # case-sensitive, as documented
            return self._page(found, query, "/v1/customers")
        if method == "GET" and path in ("/v1/invoices", "/v1/charges"):
            store = self.invoices if path == "/v1/invoices" else self.charges
            owner = query.get("customer", [None])[0]
            if owner is not None and owner not in self.customers:
                return Reply(404, stripe_error("invalid_request_error", "No such customer",
                                               code="resource_missing", param="customer"))
            found = [i for i in store.values() if owner is None or i["customer"] == owner]
            return self._page(found, query, path)
        if path.startswith("/v1/customers/") and method in ("GET", "DELETE"):
            customer_id = path.removeprefix("/v1/customers/")
            customer = self.customers.get(customer_id)
            missing = Reply(404, stripe_error("invalid_request_error", f"No such customer: '{customer_id}'",
                                              code="resource_missing", param="id"))
            if customer is None:
                return missing
            if method == "GET":
                return Reply(200, dict(customer))
            self.delete_calls += 1
            if customer.get("deleted"):
                return missing if self.repeat_delete == "404" else Reply(200, dict(customer))
            # Deleting removes the customer's details and card data; a tombstone remains.
            self.customers[customer_id] = {"id": customer_id, "object": "customer", "deleted": True}
            return Reply(200, {"id": customer_id, "object": "customer", "deleted": True})
        return Reply(404, stripe_error("invalid_request_error",
                                       f"Unrecognized request URL ({method}: {path}).",))


# -- Privacy redaction jobs (public preview) --------------------------------------------------
# From the preview contract: POST /v1/privacy/redaction_jobs `objects[customers][]` (form
# encoded; indexed `objects[customers][0]` as Stripe's libraries send arrays) and
# `validation_behavior` (error|fix) answers 200 with the job in `validating`. Retrieving it
# stands for the time passing: each GET moves an asynchronous phase one step (validating ->
# ready, or failed when an object cannot be redacted; redacting -> succeeded). `ready` never
# moves by itself: POST .../run (only from ready) starts `redacting`. POST .../cancel only from
# ready or failed (-> canceled). GET .../validation_errors lists `privacy.redaction_job_validation_error`s.
# An object already in a job that is not finished gives `locked_by_other_job`. Redacting
# replaces the customer's personal fields, and those of its invoices and charges, by
# "[redacted]"; the objects stay retrievable. The job's `objects` carries every root type of
# `redaction_resource_root_objects` (all nine are required there, each an array or null): the
# ids sent for a type, null for a type the request did not name. Its `validation_errors` embeds
# the first ten errors once validated (null before), as the preview schema describes.

REDACTION_JOBS = "/v1/privacy/redaction_jobs"
REDACTED = "[redacted]"
# `redaction_resource_root_objects`' required properties (the request also takes `issuing_cards`,
# which the job object does not list).
ROOT_OBJECT_TYPES = ("charges", "checkout_sessions", "customers", "identity_verification_sessions",
                     "invoices", "issuing_cardholders", "payment_intents", "radar_value_list_items",
                     "setup_intents")
EMBEDDED_ERRORS = 10
_UNFINISHED = frozenset({"created", "validating", "ready", "redacting", "failed", "canceling"})


class RedactionJobs:
    def __init__(self, stripe: FakeStripe) -> None:
        self.stripe = stripe
        self.jobs: dict[str, dict[str, Any]] = {}
        self.errors: dict[str, list[dict[str, Any]]] = {}
        self.unredactable: dict[str, str] = {}  # object id -> validation error code (seeded by tests)
        self.by_idempotency_key: dict[str, str] = {}
        self.run_calls = 0
        self.cancel_calls = 0

    def status(self, job_id: str) -> str:
        return str(self.jobs[job_id]["status"])

    @staticmethod
    def _objects(body: dict[str, Any]) -> dict[str, list[str] | None]:
        """`objects[<type>][<n>]=id` form fields as the job's `objects`, in index order."""
        sent: dict[str, list[tuple[int, str]]] = {}
        for key, value in body.items():
            names = key.replace("]", "").split("[")
            if len(names) == 3 and names[0] == "objects":
                position = int(names[2]) if names[2].isdigit() else len(sent.get(names[1], []))
                sent.setdefault(names[1], []).append((position, str(value)))
        return {kind: [v for _, v in sorted(sent[kind])] if kind in sent else None
                for kind in ROOT_OBJECT_TYPES}

    @staticmethod
    def _customers(job: dict[str, Any]) -> list[str]:
        return list(job["objects"]["customers"] or [])

    def route(self, method: str, path: str, query: dict[str, list[str]], body: dict[str, Any],
              headers: dict[str, str]) -> Reply:
        parts = path.removeprefix(REDACTION_JOBS).strip("/").split("/")
        if method == "POST" and parts == [""]:
            return self._create(body, headers.get("idempotency-key"))
        job = self.jobs.get(parts[0])
        if job is None:
            return Reply(404, stripe_error("invalid_request_error", f"No such redaction job: '{parts[0]}'",
                                           code="resource_missing", param="job"))
        if method == "GET" and len(parts) == 1:
            self._advance(job)
            return Reply(200, dict(job))
        if method == "GET" and parts[1:] == ["validation_errors"]:
            errors = self.errors.get(job["id"], [])
            return Reply(200, {"object": "list", "url": f"{path}", "has_more": False, "data": errors})
        if method == "POST" and parts[1:] == ["run"]:
            if job["status"] != "ready":
                return self._invalid_state(job, "run")
            self.run_calls += 1
            job["status"] = "redacting"
            return Reply(200, dict(job))
        if method == "POST" and parts[1:] == ["cancel"]:
            if job["status"] not in ("ready", "failed"):
                return self._invalid_state(job, "cancel")
            self.cancel_calls += 1
            job["status"] = "canceled"
            return Reply(200, dict(job))
        return Reply(404, stripe_error("invalid_request_error",
                                       f"Unrecognized request URL ({method}: {path})."))

    @staticmethod
    def _invalid_state(job: dict[str, Any], action: str) -> Reply:
        return Reply(400, stripe_error("invalid_request_error",
                                       f"You cannot {action} a redaction job in status {job['status']}.",
                                       code="redaction_job_invalid_state"))

    def _create(self, body: dict[str, Any], idempotency_key: str | None) -> Reply:
        if idempotency_key and idempotency_key in self.by_idempotency_key:
            return Reply(200, dict(self.jobs[self.by_idempotency_key[idempotency_key]]))
        objects = self._objects(body)
        if not objects["customers"]:
            return Reply(400, stripe_error("invalid_request_error", "Missing required param: objects.",
                                           code="parameter_missing", param="objects"))
        behaviour = body.get("validation_behavior", "error")
        if behaviour not in ("error", "fix"):
            return Reply(400, stripe_error("invalid_request_error", "Invalid validation_behavior",
                                           code="parameter_invalid_string", param="validation_behavior"))
        job_id = _new_id("prj")
        self.jobs[job_id] = {"id": job_id, "object": "privacy.redaction_job", "created": int(time.time()),
                             "livemode": False, "status": "validating", "validation_behavior": behaviour,
                             "objects": objects, "validation_errors": None}
        if idempotency_key:
            self.by_idempotency_key[idempotency_key] = job_id
        return Reply(200, dict(self.jobs[job_id]))

    def _locked_elsewhere(self, job: dict[str, Any], object_id: str) -> bool:
        return any(other["id"] != job["id"] and other["status"] in _UNFINISHED
                   and object_id in self._customers(other) for other in self.jobs.values())

    def _advance(self, job: dict[str, Any]) -> None:
        if job["status"] == "validating":
            errors = []
            for customer_id in self._customers(job):
                related = [customer_id, *(i["id"] for i in self.stripe.invoices.values()
                                          if i["customer"] == customer_id),
                           *(c["id"] for c in self.stripe.charges.values() if c["customer"] == customer_id)]
                for object_id in related:
                    code = self.unredactable.get(object_id)
                    if code is None and object_id == customer_id and self._locked_elsewhere(job, object_id):
                        code = "locked_by_other_job"
                    if code is not None:
                        errors.append({"id": _new_id("prjve"),
                                       "object": "privacy.redaction_job_validation_error",
                                       "code": code, "message": f"The object cannot be redacted ({code}).",
                                       "erroring_object": {"id": object_id,
                                                           "object_type": object_id.split("_")[0]}})
            self.errors[job["id"]] = errors
            job["validation_errors"] = {"object": "list", "data": errors[:EMBEDDED_ERRORS],
                                        "has_more": len(errors) > EMBEDDED_ERRORS,
                                        "url": f"{REDACTION_JOBS}/{job['id']}/validation_errors"}
            job["status"] = "failed" if errors else "ready"
        elif job["status"] == "redacting":
            for customer_id in self._customers(job):
                self._redact(customer_id)
            job["status"] = "succeeded"

    def _redact(self, customer_id: str) -> None:
        customer = self.stripe.customers.get(customer_id)
        if customer is not None and not customer.get("deleted"):
            customer.update(email=REDACTED, name=REDACTED, redaction={"status": "processing"})
        for invoice in self.stripe.invoices.values():
            if invoice["customer"] == customer_id:
                invoice["customer_email"] = REDACTED
        for charge in self.stripe.charges.values():
            if charge["customer"] == customer_id:
                charge["billing_details"] = {"email": REDACTED, "name": REDACTED}


# == Systems check (erasure systems check): restricted keys and the read-only list of jobs ===========
# Additive. A restricted key's (rk_) forbidden call: 403 naming the permission ("Having the 'rak_...'
# permission would allow..."); switch `restrict_key`. Lists jobs (GetPrivacyRedactionJobs, preview).
FULL_RESTRICTED = {"rak_customer_read", "rak_customer_write", "rak_invoice_read", "rak_charge_read",
                   "rak_privacy_redaction_job_read", "rak_privacy_redaction_job_write"}
_RESOURCES = ((REDACTION_JOBS, "privacy_redaction_job"), ("/v1/customers", "customer"),
              ("/v1/invoices", "invoice"), ("/v1/charges", "charge"))


def restrict_key(fake: FakeStripe, key: str, permissions: set[str]) -> None:
    """Accept `key` as a restricted key granted only `permissions` (Stripe's rak_* names)."""
    fake.secret_keys.add(key)
    fake.__dict__.setdefault("restricted_keys", {})[key] = set(permissions)


def access_reply(fake: FakeStripe, method: str, path: str, query: dict[str, list[str]],
                 headers: dict[str, str]) -> Reply | None:
    """A restricted key's refusal, or the list of redaction jobs; None: the fake's routes answer."""
    value = headers.get("authorization", "")
    key = base64.b64decode(value[6:]).decode().split(":")[0] if value.startswith("Basic ") else value[7:]
    granted = fake.__dict__.get("restricted_keys", {}).get(key)
    access = "read" if method == "GET" else "write"
    needed = next((f"rak_{name}_{access}" for prefix, name in _RESOURCES if path.startswith(prefix)), None)
    if granted is not None and needed is not None and needed not in granted:
        return Reply(403, stripe_error(
            "invalid_request_error", "The provided key 'rk_test_********************' does not have the "
            "required permissions for this endpoint on account 'acct_fake'. Having the "
            f"'{needed}' permission would allow this request to continue."))
    if method == "GET" and path == REDACTION_JOBS:
        with fake._lock:
            return fake._page([dict(job) for job in fake.redaction.jobs.values()], query, REDACTION_JOBS)
    return None
