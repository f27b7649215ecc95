"""Stripe redaction jobs (public preview): redact a customer and every object related to it.

Deleting a customer leaves its charges, invoices, payment methods, events and request logs
holding the person's details. A redaction job replaces them with `[redacted]`:

1. `POST /v1/privacy/redaction_jobs` `objects[customers][n]=cus_…`, `validation_behavior`
   (error|fix), with an `Idempotency-Key` per request and attempt (a lost answer does not
   create a second job, which would lock the customer: `locked_by_other_job`). The job is
   `created`/`validating`: the result is `pending` with `stripe-redaction:<job id>` as job_ref.
2. Polling `GET /v1/privacy/redaction_jobs/{job}`:
   - `created`, `validating`, `redacting`, `canceling`: still `pending`;
   - `ready`: it never runs by itself, so `POST …/{job}/run` (irreversible), then `pending`;
   - `succeeded`: the customers it names are deleted as without redaction (which also cancels
     their subscriptions); `erased`, but *accepted*: Stripe's own `redaction.status` says related
     objects may stay `processing` for up to four days after the job succeeds;
   - `failed` (the `privacy.redaction_job.validation_error` event): the validation errors are
     read (codes and object types, never the person), the job is cancelled so it no longer
     locks the objects, and the outcome is a permanent failure saying what to fix;
   - `canceled`: someone cancelled it outside the pipeline: a permanent failure, nothing redacted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from connectors.base import EraseResult, PermanentError
from connectors.client import ProcessorClient
from schemas import Evidence, ResidualData

JOBS = "/v1/privacy/redaction_jobs"
JOB = "/v1/privacy/redaction_jobs/{job}"
RUN = "/v1/privacy/redaction_jobs/{job}/run"
CANCEL = "/v1/privacy/redaction_jobs/{job}/cancel"
ERRORS = "/v1/privacy/redaction_jobs/{job}/validation_errors"
JOB_PREFIX = "stripe-redaction:"
WAITING = frozenset({"created", "validating", "redacting", "canceling"})
# Stripe: a redacted object's related objects "may take up to four days" to be redacted too.
RELATED_REDACTION = timedelta(days=4)
RELATED = ("objects related to the customer (charges, invoices, payment methods, events, logs) "
           "still being redacted")

ValidationBehaviour = Literal["error", "fix"]


def job_ref(job_id: str) -> str:
    return f"{JOB_PREFIX}{job_id}"


class RedactionJobs:
    """The redaction-job half of the Stripe connector; `delete(customer_id)` is its other half."""

    def __init__(self, system: str, client: ProcessorClient, behaviour: ValidationBehaviour,
                 poll_after_s: float, delete: Callable[[str], tuple[bool, int]]) -> None:
        self.system = system
        self._client = client
        self._behaviour = behaviour
        self._poll_after_s = poll_after_s
        self._delete = delete

    def start(self, customers: list[str], idempotency_key: str) -> EraseResult:
        form = {f"objects[customers][{n}]": c for n, c in enumerate(customers)}
        form["validation_behavior"] = self._behaviour
        job = self._client.json_object("POST", JOBS, data=form,
                                       headers={"Idempotency-Key": idempotency_key})
        return self._pending(self._job_id(job), 200)

    def poll(self, ref: str) -> EraseResult:
        job_id = ref.removeprefix(JOB_PREFIX)
        job = self._client.json_object("GET", JOB, {"job": job_id})
        status = str(job.get("status", ""))
        if status in WAITING:
            return self._pending(job_id, 200)
        if status == "ready":
            self._client.request("POST", RUN, {"job": job_id})
            return self._pending(job_id, 200)
        if status == "succeeded":
            return self._succeeded(job_id, job)
        if status == "failed":
            raise PermanentError(self.system, self._failure(job_id))
        if status == "canceled":
            raise PermanentError(self.system, f"redaction job {job_id} was canceled outside the pipeline: "
                                              "nothing was redacted; retry to start a new job")
        raise PermanentError(self.system, f"redaction job {job_id} has unknown status {status!r:.30}")

    def _job_id(self, job: dict[str, Any]) -> str:
        job_id = job.get("id")
        if not isinstance(job_id, str) or not job_id:
            raise PermanentError(self.system, f"no job id in the answer from POST {JOBS}")
        return job_id

    def _pending(self, job_id: str, http_status: int) -> EraseResult:
        return EraseResult(status="pending", job_ref=job_ref(job_id), poll_after_s=self._poll_after_s,
                           evidence=Evidence(reference=f"redaction job {job_id}"[:200],
                                             http_status=http_status))

    def _succeeded(self, job_id: str, job: dict[str, Any]) -> EraseResult:
        objects = job.get("objects") if isinstance(job.get("objects"), dict) else {}
        customers = [str(c) for c in (objects or {}).get("customers") or []]
        last_status = 200
        for customer_id in customers:  # 404: deleted by an earlier poll whose answer was lost
            _, last_status = self._delete(customer_id)
        now = datetime.now(UTC)
        return EraseResult(status="erased", evidence=Evidence(
            reference=f"redaction job {job_id}; deleted {', '.join(customers)}"[:200],
            http_status=last_status,
            records_affected=len(customers), assurance="accepted", completes_by=now + RELATED_REDACTION,
            residual=[ResidualData(what=RELATED, until=now + RELATED_REDACTION)]))

    def _failure(self, job_id: str) -> str:
        """What blocked the job, by code and object type (ids are Stripe's, never the person's)."""
        listed = self._client.json_object("GET", ERRORS, {"job": job_id}, params={"limit": "100"})
        counts: Counter[str] = Counter()
        for error in listed.get("data") or []:
            if isinstance(error, dict):
                erroring = error.get("erroring_object")
                kind = erroring.get("object_type", "?") if isinstance(erroring, dict) else "?"
                counts[f"{error.get('code', '?')!s:.30} on {kind!s:.30}"] += 1
        # A failed job keeps its objects locked against any new job: release them.
        self._client.request("POST", CANCEL, {"job": job_id}, return_statuses=(400,))
        found = "; ".join(f"{what} (x{n})" for what, n in counts.items()) or "none listed"
        return (f"redaction job {job_id} failed validation ({found}); it was canceled and nothing was "
                "redacted: resolve those objects at Stripe (or set redaction_validation: fix), then retry")
