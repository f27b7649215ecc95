"""Mixpanel GDPR API v3 data deletions: a task that runs for weeks, polled rarely.

The person's `user_id` identities are sent as Mixpanel `distinct_ids` (a person without
one is `not_found`: there is nothing this connector can name).
`POST /api/app/data-deletions/v3.0/?token=<project token>` {"distinct_ids",
"compliance_type"} with `Authorization: Bearer <GDPR OAuth token>` answers 201 with
the task's id in one of two shapes Mixpanel documents: {"status":"ok","results":{"task_id"}}
(its OpenAPI `JobCreated`) or `results` as an array of objects carrying `tracking_id` (its
reference page's example); both are read, and an answer naming several different tasks
is refused (one call creates one task). The result is `pending` with the task id as
`job_ref` and a long `poll_after_s` (six hours by default: "requests can take
multiple weeks to process"). Polling `GET .../v3.0/{task_id}?token=` reads
`results.status`:

- PENDING, STAGING, STARTED: still `pending`;
- SUCCESS: `erased`, with the task id as evidence;
- NOT_FOUND ("The deletion task cannot be found"): the task is lost, which says
  nothing about the person's data, so this is never `not_found`. The connector
  submits a new deletion task for the same distinct_ids and stays `pending` with the
  new task id: deleting the same ids again is harmless, Mixpanel's advice for a
  failed task is to "create a new task", and polling the lost id again would only
  answer NOT_FOUND until the deadline;
- UNKNOWN ("An error occurred while locating the deletion task"): an error on
  Mixpanel's side, not a running task: a retryable error that keeps the task id, so
  the runtime asks again after `lookup_retry_after_s` and its retry budget bounds it;
- FAILURE, REVOKED: a permanent error naming the task (never the person).

A task takes at most 1,999 distinct_ids (Mixpanel's documented deletion limit); a
person with more is a permanent error before any call.

Batches (`erase_batch`): one deletion task carries the distinct_ids of every fresh erasure
of the batch (more than 1,999 are split into several tasks), each erasure `pending` with
the shared task id; at Mixpanel's 1 request a second this turns a backlog of N people
from N seconds of calls into one. Polling reads each distinct task once per batch; a task
succeeds or fails whole, so its status is every erasure's it serves, and the erasures of
a lost task (NOT_FOUND) are submitted again together.

`cancel(task_id)` sends `DELETE .../v3.0/{task_id}?token=` (204) for an operator who
must withdraw a request. Mixpanel allows 1 request a second on these APIs and answers
429 beyond, with no documented header: `connectors.http` then backs off with jitter
(or honours Retry-After if Mixpanel sends one). The project token travels in the
query string, so errors name route templates only, never URLs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import partial
from typing import Any, Literal

import requests
from pydantic import BaseModel, ConfigDict, Field

from connectors.access import AccessReport
from connectors.auth import BearerTokenAuth
from connectors.base import (
    BatchItem,
    ConnectorError,
    EraseResult,
    PermanentError,
    RetryableError,
    TaskContext,
    identities_of,
    require_secret,
)
from connectors.client import ProcessorClient
from connectors.http import json_answer
from connectors.processors.bulk import Calls, Outcome, by_job, fresh, one, pack, settle
from schemas import Evidence, ResidualData, SubjectIdentities

log = logging.getLogger(__name__)

TASKS = "/api/app/data-deletions/v3.0/"
TASK = "/api/app/data-deletions/v3.0/{task_id}"
CREATE_ROUTE = f"POST {TASKS}"
POLL_ROUTE = f"GET {TASK}"
CANCEL_ROUTE = f"DELETE {TASK}"
RUNNING = frozenset({"PENDING", "STAGING", "STARTED"})
FAILED = frozenset({"FAILURE", "REVOKED"})
MAX_DISTINCT_IDS = 1999
# A task id no one made: asking for its status reads nothing of anyone and proves both tokens.
PROBE_TASK = "erasure-systems-check"
CREATE_RIGHT = "create data deletion tasks in the project"
TASK_RECORD = "Mixpanel's record of the deletion task (kept for legal compliance, no end stated)"


class MixpanelSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str = Field(default="https://mixpanel.com",
                          description="https://eu.mixpanel.com or https://in.mixpanel.com for data residency")
    project_token_env: str = "MIXPANEL_PROJECT_TOKEN"
    oauth_token_env: str = Field(default="MIXPANEL_GDPR_OAUTH_TOKEN",
                                 description="The GDPR OAuth token (expires after a year)")
    compliance_type: Literal["GDPR", "CCPA"] = "GDPR"
    timeout_s: float = Field(default=10.0, gt=0)
    poll_after_s: float = Field(default=6 * 3600.0, gt=0, description="Wait before polling a task again")
    lookup_retry_after_s: float = Field(
        default=900.0, gt=0, description="Wait before asking again about a task Mixpanel could not locate")


def _distinct_ids(subject: SubjectIdentities) -> list[str]:
    return list(dict.fromkeys(identities_of(subject, "user_id")))


class MixpanelConnector:
    # "up to 1999 distinct_ids per request" (Mixpanel's GDPR API reference, batch limits table;
    # vendor-specs/mixpanel/SOURCE.md fact 8): one deletion task per batch of that many.
    max_batch = MAX_DISTINCT_IDS

    def __init__(self, system: str, settings: MixpanelSettings) -> None:
        self.system = system
        self.settings = settings
        self._project_token = require_secret(settings.project_token_env, system)
        oauth_token = require_secret(settings.oauth_token_env, system)
        credentials = f"{settings.oauth_token_env} (and the project token in {settings.project_token_env})"
        self._credential_env = f"{settings.oauth_token_env}, {settings.project_token_env}"
        self._client = ProcessorClient(system, settings.base_url, auth=BearerTokenAuth(oauth_token),
                                       timeout_s=settings.timeout_s, secret_env=credentials)

    def _call(self, method: str, path: str, task_id: str | None = None, **kwargs: Any) -> requests.Response:
        """Every call names the project in the query string (so errors name routes, never URLs)."""
        return self._client.request(method, path, None if task_id is None else {"task_id": task_id},
                                    params={"token": self._project_token}, **kwargs)

    def erase(self, subject: SubjectIdentities, context: TaskContext) -> EraseResult:
        return one(self.erase_batch([BatchItem(subject, context)]))

    def erase_batch(self, items: Sequence[BatchItem]) -> list[EraseResult | ConnectorError]:
        """One GET per distinct task polled, then one deletion task for every distinct_id to submit
        (fresh tasks and those whose task Mixpanel lost), split only past MAX_DISTINCT_IDS."""
        outcomes: list[Outcome | None] = [None] * len(items)
        calls = Calls()
        submit: list[tuple[int, list[str]]] = []
        for task_id, indices in by_job(items).items():
            answer = calls.run(partial(self._read, task_id))
            lost = not isinstance(answer, ConnectorError) and answer[0] == "NOT_FOUND"
            if lost:
                log.warning("%s: deletion task %s cannot be found; submitting a new one",
                            self.system, task_id)
            for index in indices:
                distinct_ids = _distinct_ids(items[index].subject)
                if isinstance(answer, ConnectorError):
                    outcomes[index] = answer
                elif not lost:
                    outcomes[index] = self._polled(task_id, *answer)
                elif distinct_ids:
                    submit.append((index, distinct_ids))
                else:
                    outcomes[index] = PermanentError(self.system, f"deletion task {task_id} was lost and no "
                                                                  "distinct id is left to submit again")
        submit += fresh(self.system, items, outcomes, _distinct_ids, MAX_DISTINCT_IDS,
                        "distinct ids in one task")
        wanted = dict(submit)
        for group in pack([(index, len(ids)) for index, ids in submit], MAX_DISTINCT_IDS):
            distinct_ids = list(dict.fromkeys(i for index in group for i in wanted[index]))
            created = calls.run(partial(self._submit, distinct_ids))
            for index in group:
                outcomes[index] = created if isinstance(created, ConnectorError) else EraseResult(
                    status="pending", job_ref=created[0], poll_after_s=self.settings.poll_after_s,
                    evidence=Evidence(reference=created[0][:200], http_status=created[1],
                                      records_affected=len(wanted[index])))
        return settle(self.system, outcomes)

    def _submit(self, distinct_ids: list[str]) -> tuple[str, int]:
        """One deletion task for these distinct_ids: (task id, HTTP status)."""
        response = self._call("POST", TASKS,
                              json={"distinct_ids": distinct_ids,
                                    "compliance_type": self.settings.compliance_type})
        body = json_answer(response, self.system, CREATE_ROUTE)
        task_id = self._created_task_id(body.get("results") if isinstance(body, dict) else None)
        return task_id, response.status_code

    def _created_task_id(self, results: Any) -> str:
        """The task id from `results.task_id` (the spec) or `results[].tracking_id` (the docs' example)."""
        if isinstance(results, dict):
            found = [results.get("task_id")]
        elif isinstance(results, list):
            found = [item.get("tracking_id") for item in results if isinstance(item, dict)]
        else:
            found = []
        ids = list(dict.fromkeys(str(i) for i in found if isinstance(i, str | int) and str(i)))
        if not ids:
            raise PermanentError(self.system, "no task id (results.task_id or results[].tracking_id) in the "
                                              f"answer from {CREATE_ROUTE}")
        if len(ids) > 1:
            raise PermanentError(self.system, f"the answer from {CREATE_ROUTE} names {len(ids)} tasks for "
                                              "one deletion: cannot tell which to poll")
        return ids[0]

    def _read(self, task_id: str) -> tuple[str, int]:
        """The task's `results.status` and the HTTP status."""
        response = self._call("GET", TASK, task_id)
        body = json_answer(response, self.system, POLL_ROUTE)
        results = body.get("results") if isinstance(body, dict) else None
        if not isinstance(results, dict):
            raise PermanentError(self.system, f"no results object in the answer from {POLL_ROUTE}")
        return str(results.get("status", "")), response.status_code

    def _polled(self, task_id: str, status: str, http_status: int) -> Outcome:
        """What the task's status means for each erasure it serves (a task succeeds or fails whole)."""
        evidence = Evidence(reference=task_id[:200], http_status=http_status)
        if status in RUNNING:
            return EraseResult(status="pending", job_ref=task_id, poll_after_s=self.settings.poll_after_s,
                               evidence=evidence)
        if status == "SUCCESS":  # Mixpanel's task status says it is done
            return EraseResult(status="erased", evidence=evidence.model_copy(update={
                "assurance": "confirmed", "residual": [ResidualData(what=TASK_RECORD)]}))
        if status == "UNKNOWN":
            return RetryableError(self.system, f"Mixpanel could not locate deletion task {task_id} (UNKNOWN)",
                                  retry_after_s=self.settings.lookup_retry_after_s, http_status=http_status)
        if status in FAILED:
            return PermanentError(self.system, f"deletion task {task_id} ended {status}")
        return PermanentError(self.system, f"deletion task {task_id} has unknown status {status!r:.30}")

    def cancel(self, task_id: str) -> None:
        """Withdraw a deletion task that has not run yet (Mixpanel then reports it REVOKED)."""
        response = self._call("DELETE", TASK, task_id)
        if response.status_code not in (200, 204):
            raise PermanentError(self.system, f"unexpected HTTP {response.status_code} from {CANCEL_ROUTE}")

    def check(self) -> AccessReport:
        """The GDPR API has no read-only call that shows a right to delete: a status query for a task
        no one made proves the OAuth token and the project token, nothing more."""
        response = self._call("GET", TASK, PROBE_TASK, return_statuses=(404,))
        return AccessReport(reachable=True, authenticated=True, scopes_needed=[CREATE_RIGHT],
                            unverified=[CREATE_RIGHT], credential_env=self._credential_env,
                            notes=f"both tokens accepted by {POLL_ROUTE} (HTTP {response.status_code}); the "
                                  "right to create deletion tasks cannot be verified without erasing")

    def close(self) -> None:
        self._client.close()
