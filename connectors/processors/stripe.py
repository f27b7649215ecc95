"""Stripe: find the customers by e-mail, note what Stripe keeps, then DELETE /v1/customers/{id}.

`GET /v1/customers?email=` (a case-sensitive filter: the address as given and its
lower-case form are both asked) may list several customers. For each, the invoices
and charges are read first: Stripe keeps them after the customer is deleted, so
when there are any the outcome is "held", with one hold for `retained_category`
whose end runs from the latest invoice or charge date. Deleting answers 200
`{"deleted": true}`; 404 `resource_missing` means already gone. A 429 with
`Stripe-Should-Retry: false` is never retried (`classify_response` sees to it).

With `redaction: true` the customers found go to a redaction job instead
(`connectors/processors/stripe_redaction.py`): their charges, invoices, events and logs are
redacted too, so nothing is held at Stripe (the site's own accounting copy carries the
hold), and the customers are deleted once the job succeeds. Without it, the deleted
customer's shell and the events and logs naming it are reported as residual data.

Every read happens before any delete, and what a deleted customer left behind is
remembered per request: a retry after a partial failure no longer finds the
customers already deleted (Stripe lists live customers only), but still reports
their hold.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import requests
from pydantic import BaseModel, ConfigDict, Field

from connectors.access import AccessReport
from connectors.auth import BearerTokenAuth
from connectors.base import (
    EraseResult,
    PermanentError,
    TaskContext,
    identities_of,
    require_secret,
)
from connectors.client import ProcessorClient
from connectors.processors.stripe_redaction import JOB_PREFIX, RedactionJobs, ValidationBehaviour
from schemas import Evidence, Hold, ResidualData, SubjectIdentities

if TYPE_CHECKING:
    from connectors.retention import RetentionPolicy

CUSTOMERS = "/v1/customers"
INVOICES = "/v1/invoices"
CHARGES = "/v1/charges"
CUSTOMER = "/v1/customers/{id}"
PAGE_SIZE = 100
MAX_PAGES = 50
MAX_REMEMBERED = 1000
SHELL = "deleted customer record (id, deleted flag)"
LOGS = "events and request logs naming the customer (not redacted: redaction is off)"
REDACTION_JOBS = "/v1/privacy/redaction_jobs"
# Restricted keys (rk_): the Dashboard's resource permissions. A refused call's error names the
# permission that would let it continue: "Having the 'rak_customer_read' permission would allow ...".
READS = ((CUSTOMERS, "Customers: Read"), (INVOICES, "Invoices: Read"), (CHARGES, "Charges: Read"))
WRITE = "Customers: Write (to delete customers)"
REDACTION = "Privacy redaction jobs: Write (redaction: true)"
NAMED_PERMISSION = re.compile(r"'(rak_[a-z0-9_]+)' permission")


class StripeSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str = "https://api.stripe.com"
    secret_key_env: str = "STRIPE_SECRET_KEY"
    timeout_s: float = Field(default=10.0, gt=0)
    retained_category: str = Field(default="invoices", min_length=1,
                                   description="The retention category of the invoices and charges "
                                               "Stripe keeps after the customer is deleted")
    redaction: bool = Field(default=False, description="Erase through a redaction job: related objects, "
                                                       "events and logs are redacted too")
    redaction_validation: ValidationBehaviour = Field(
        default="error", description="fix: let Stripe fix what it can before running the job")
    poll_after_s: float = Field(default=3600.0, gt=0, description="Wait before polling a redaction job again")


@dataclass
class _Progress:
    """What one request has deleted so far, kept across its retries."""

    deleted: list[str] = field(default_factory=list)
    latest_record: int | None = None


class StripeConnector:
    def __init__(self, system: str, settings: StripeSettings) -> None:
        self.system = system
        self.settings = settings
        secret = require_secret(settings.secret_key_env, system)
        self._unrestricted = secret.startswith("sk_")  # a secret key may do anything; rk_ keys may not
        self._client = ProcessorClient(system, settings.base_url, auth=BearerTokenAuth(secret),
                                       timeout_s=settings.timeout_s, secret_env=settings.secret_key_env)
        self._progress: dict[str, _Progress] = {}
        self._lock = threading.Lock()
        self._redaction = RedactionJobs(system, self._client, settings.redaction_validation,
                                        settings.poll_after_s, self._delete)

    # -- HTTP ------------------------------------------------------------------
    def _list(self, path: str, params: dict[str, str]) -> list[dict[str, Any]]:
        """Every object of a Stripe list, following `has_more` / `starting_after`."""
        route = f"GET {path}"
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        for _ in range(MAX_PAGES):
            page_params = {**params, "limit": str(PAGE_SIZE)}
            if cursor is not None:
                page_params["starting_after"] = cursor
            page = self._client.json("GET", path, params=page_params)
            data = page.get("data") if isinstance(page, dict) else None
            if not isinstance(data, list):
                raise PermanentError(self.system, f"answer to {route} has no 'data' list")
            items.extend(d for d in data if isinstance(d, dict))
            if not page.get("has_more") or not data:
                return items
            cursor = str(data[-1].get("id"))
        raise PermanentError(self.system, f"{route} returned more than {MAX_PAGES} pages")

    def _latest_record(self, customer_id: str) -> int | None:
        """The newest `created` (unix time) among the customer's invoices and charges."""
        latest: int | None = None
        for path in (INVOICES, CHARGES):
            for item in self._list(path, {"customer": customer_id}):
                created = item.get("created")
                if isinstance(created, int) and (latest is None or created > latest):
                    latest = created
        return latest

    def _delete(self, customer_id: str) -> tuple[bool, int]:
        response = self._client.request("DELETE", CUSTOMER, {"id": customer_id}, return_statuses=(404,))
        if response.status_code == 404:
            return False, 404
        return True, response.status_code

    # -- erasure ---------------------------------------------------------------
    def _policy(self, context: TaskContext) -> RetentionPolicy:
        policy = context.retention
        category = self.settings.retained_category
        if policy is None or policy.rule(category) is None:
            raise PermanentError(self.system, f"Stripe keeps invoices and charges but there is no retention "
                                              f"rule for category {category!r}: add one to the policy")
        return policy

    def _hold(self, context: TaskContext, latest_record: int) -> Hold:
        category = self.settings.retained_category
        policy = self._policy(context)
        received_at = context.received_at or datetime.now(UTC)
        record_date = datetime.fromtimestamp(latest_record, UTC)
        return policy.hold(category, policy.retain_until(category, received_at, record_date))

    def erase(self, subject: SubjectIdentities, context: TaskContext) -> EraseResult:
        if context.release_categories is not None:
            # The held invoices and charges live at Stripe: only its redaction tooling removes them.
            return EraseResult(status="manual", evidence=Evidence(records_affected=0))
        if context.job_ref and context.job_ref.startswith(JOB_PREFIX):
            return self._redaction.poll(context.job_ref)
        emails: list[str] = []
        for value in identities_of(subject, "email"):
            for variant in (value.strip(), value.strip().lower()):
                if variant and variant not in emails:
                    emails.append(variant)
        with self._lock:
            while len(self._progress) >= MAX_REMEMBERED and context.request_id not in self._progress:
                self._progress.pop(next(iter(self._progress)))  # the oldest: a request failed for good
            progress = self._progress.setdefault(context.request_id, _Progress())
        # Reads first: a failure here leaves nothing half done.
        customers: dict[str, int | None] = {}
        for email in emails:
            for customer in self._list(CUSTOMERS, {"email": email}):
                customer_id = customer.get("id")
                if isinstance(customer_id, str) and not customer.get("deleted"):
                    customers.setdefault(customer_id, None)
        if self.settings.redaction and customers:
            # Redacted with the customer: Stripe's invoices and charges no longer hold the person.
            with self._lock:
                self._progress.pop(context.request_id, None)
            return self._redaction.start(list(customers), f"erasure-{context.request_id}-{context.attempt}")
        for customer_id in customers:
            customers[customer_id] = self._latest_record(customer_id)
        if any(latest is not None for latest in customers.values()):
            self._policy(context)  # nothing is deleted when what Stripe keeps could not be held
        last_status: int | None = None
        for customer_id, latest in customers.items():
            deleted, last_status = self._delete(customer_id)
            if deleted:
                with self._lock:
                    progress.deleted.append(customer_id)
                    if latest is not None and (progress.latest_record is None
                                               or latest > progress.latest_record):
                        progress.latest_record = latest
        with self._lock:
            self._progress.pop(context.request_id, None)
        erased = progress.deleted
        reference = ", ".join(erased)[:200] or None
        if not erased:
            return EraseResult(status="not_found", evidence=Evidence(
                http_status=last_status, records_affected=0, reference=reference))
        # `deleted: true` confirms it, but GET still answers a deleted-customer shell, and events and
        # logs keep the details: Stripe states no end for either.
        evidence = Evidence(http_status=last_status, records_affected=len(erased), reference=reference,
                            assurance="confirmed",
                            residual=[ResidualData(what=SHELL), ResidualData(what=LOGS)])
        if progress.latest_record is not None:
            return EraseResult(status="held", evidence=evidence,
                               holds=[self._hold(context, progress.latest_record)])
        return EraseResult(status="erased", evidence=evidence)

    def check(self) -> AccessReport:
        """Read-only list calls (limit 1) for every resource the erasure reads; a restricted key's
        refusal names the permission it lacks. Deleting customers cannot be tried without erasing."""
        env = self.settings.secret_key_env
        redaction_read = [(REDACTION_JOBS, "Privacy redaction jobs: Read")] if self.settings.redaction else []
        reads = [*READS, *redaction_read]
        needed = [WRITE, *(label for _, label in reads), *([REDACTION] if self.settings.redaction else [])]
        missing: list[str] = []
        for path, label in reads:
            response = self._client.request("GET", path, params={"limit": "1"}, return_statuses=(403,))
            if response.status_code == 403:
                named = NAMED_PERMISSION.search(str(_error_message(response)))
                missing.append(f"{label} ({named.group(1)})" if named else label)
        if self._unrestricted:
            return AccessReport(reachable=True, authenticated=True, scopes_needed=needed, missing=missing,
                                credential_env=env, notes="a secret key (sk_): every permission")
        writes = [WRITE, *([REDACTION] if self.settings.redaction else [])]
        return AccessReport(reachable=True, authenticated=True, scopes_needed=needed, missing=missing,
                            unverified=[] if missing else writes, credential_env=env,
                            notes="a restricted key: reads verified with limit-1 lists; its write "
                                  "permissions cannot be tried without erasing")

    def close(self) -> None:
        self._client.close()


def _error_message(response: requests.Response) -> object:
    """Stripe's error envelope `error.message`, or None (a permission error names the permission)."""
    try:
        return response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return None
