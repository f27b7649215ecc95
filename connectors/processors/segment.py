"""Segment Public API regulations: one asynchronous SUPPRESS_WITH_DELETE job per person.

Segment deletes by `userId`, so the person's `user_id` identities are the subject
ids (a person without one is `not_found`: there is nothing this connector can name).
`POST /regulations` {"regulationType", "subjectType": "USER_ID", "subjectIds"}
answers 200 {"data": {"regulateId"}}: the result is `pending` with the regulate id
as `job_ref`. Polling `GET /regulations/{id}` reads `overallStatus`:

- INITIALIZED, RUNNING: still `pending`;
- FINISHED: `erased`, with the regulate id as evidence;
- PARTIAL_SUCCESS: a **permanent failure** whose message names the destinations that
  did not finish (name, id and status; never the person, nor Segment's `errString`,
  which may echo the subject). Some of the person's data is still held downstream, so
  reporting `erased` would be false; the compliance officer must act on those
  destinations (by hand in each, or by a new request once they are fixed), and the
  failed outcome puts the request in "needs attention" with that list;
- FAILED, INVALID, NOT_SUPPORTED: a permanent failure naming the regulation and status.

Segment forgets regulations after 90 days: a 404 on a regulation this connector created
says nothing of the person's data (neither failed nor not found). Its result being unknown,
a new regulation for the same user ids is created (suppressing and deleting again is
harmless) and the erasure stays `pending` with the new id.

Not found: Segment cannot tell. A regulation for an unknown userId runs and finishes
like any other, so an unknown person ends `erased` (the suppression applies to future
data anyway). Device-mode destinations are outside Segment's reach.

Batches (`erase_batch`): one regulation carries the user ids of every fresh task of the
batch (Segment takes up to 5,000 per call; more are split into several regulations), and
each task is `pending` with that shared regulate id. Polling reads each distinct regulation
once per batch; its status is the same for every task it serves (Segment reports per
destination, never per user id, so a PARTIAL_SUCCESS fails every task of the regulation).

Bearer token. 429 carries Retry-After (whole seconds); 200s carry X-RateLimit-Reset
as an RFC 5322 date: both read by `connectors.http`.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from connectors.access import AccessReport
from connectors.auth import BearerTokenAuth
from connectors.base import (
    BatchItem,
    ConnectorError,
    EraseResult,
    PermanentError,
    TaskContext,
    identities_of,
    require_secret,
)
from connectors.client import ProcessorClient
from connectors.http import json_answer
from connectors.processors.bulk import Calls, Outcome, by_job, fresh, one, pack, settle
from schemas import Evidence, ResidualData, SubjectIdentities

REGULATIONS = "/regulations"
REGULATION = "/regulations/{id}"
CREATE_ROUTE = f"POST {REGULATIONS}"
LIST_ROUTE = f"GET {REGULATIONS}"
CREATE_RIGHT = "create workspace regulations (the token's role)"
POLL_ROUTE = f"GET {REGULATION}"
RUNNING = frozenset({"INITIALIZED", "RUNNING"})
FAILED = frozenset({"FAILED", "INVALID", "NOT_SUPPORTED"})
MAX_SUBJECT_IDS = 5000
LISTED_DESTINATIONS_BUDGET = 320  # outcome messages hold 500 characters
# A suppressing regulation keeps the user ids so that Segment drops their new data.
SUPPRESSED = "the user id(s) on Segment's suppression list (so new data is dropped)"

RegulationType = Literal["SUPPRESS_WITH_DELETE", "SUPPRESS_WITH_DELETE_INTERNAL", "DELETE_ONLY",
                         "DELETE_INTERNAL"]


class SegmentSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str = "https://api.segmentapis.com"
    token_env: str = "SEGMENT_API_TOKEN"
    regulation_type: RegulationType = "SUPPRESS_WITH_DELETE"
    timeout_s: float = Field(default=10.0, gt=0)
    poll_after_s: float = Field(default=3600.0, gt=0, description="Wait before polling a regulation again")


def unfinished_destinations(regulation: dict[str, Any]) -> list[str]:
    """`name (id): STATUS` of every destination that did not finish; no errString."""
    named: list[str] = []
    for stream in regulation.get("streamStatus") or []:
        if not isinstance(stream, dict):
            continue
        for destination in stream.get("destinationStatus") or []:
            if not isinstance(destination, dict) or destination.get("status") == "FINISHED":
                continue
            label = (f"{destination.get('name', '?')!s:.40} ({destination.get('id', '?')!s:.32}): "
                     f"{destination.get('status', '?')!s:.16}")
            if label not in named:
                named.append(label)
    return named


def _listed(unfinished: list[str]) -> str:
    if not unfinished:
        return "that Segment did not list"
    listed: list[str] = []
    for label in unfinished:
        if listed and len("; ".join([*listed, label])) > LISTED_DESTINATIONS_BUDGET:
            break
        listed.append(label)
    more = len(unfinished) - len(listed)
    return "; ".join(listed) + (f" and {more} more" if more else "")


def _user_ids(subject: SubjectIdentities) -> list[str]:
    return list(dict.fromkeys(identities_of(subject, "user_id")))


class SegmentConnector:
    # Segment's Public API takes "up to 5,000 userIds per Public API call" (shared/reference
    # processor_apis.md §2.8 and dsr_landscape.md, from segment-docs): one regulation per batch.
    max_batch = MAX_SUBJECT_IDS

    def __init__(self, system: str, settings: SegmentSettings) -> None:
        self.system = system
        self.settings = settings
        token = require_secret(settings.token_env, system)
        self._client = ProcessorClient(system, settings.base_url, auth=BearerTokenAuth(token),
                                       headers={"accept": "application/vnd.segment.v1+json"},
                                       timeout_s=settings.timeout_s, secret_env=settings.token_env)

    def erase(self, subject: SubjectIdentities, context: TaskContext) -> EraseResult:
        return one(self.erase_batch([BatchItem(subject, context)]))

    def erase_batch(self, items: Sequence[BatchItem]) -> list[EraseResult | ConnectorError]:
        """One GET per distinct regulation polled, then one regulation for every user id to submit
        (fresh tasks and those whose regulation Segment forgot), split only past MAX_SUBJECT_IDS."""
        outcomes: list[Outcome | None] = [None] * len(items)
        calls = Calls()
        submit: list[tuple[int, list[str], str]] = []  # (item, its user ids, evidence note)
        for regulate_id, indices in by_job(items).items():
            answer = calls.run(partial(self._read, regulate_id))
            for index in indices:
                if answer is not None:
                    outcomes[index] = (answer if isinstance(answer, ConnectorError)
                                       else self._polled(regulate_id, *answer))
                    continue
                user_ids = _user_ids(items[index].subject)  # forgotten after 90 days: submit again
                if not user_ids:
                    outcomes[index] = PermanentError(self.system, f"regulation {regulate_id} is unknown "
                                                     "to Segment and no user id is left to submit again")
                else:
                    submit.append((index, user_ids, f" (replaces {regulate_id}, forgotten by Segment)"))
        submit += [(index, user_ids, "") for index, user_ids in fresh(
            self.system, items, outcomes, _user_ids, MAX_SUBJECT_IDS, "user ids in one regulation")]
        wanted = {index: (user_ids, note) for index, user_ids, note in submit}
        for group in pack([(index, len(user_ids)) for index, user_ids, _ in submit], MAX_SUBJECT_IDS):
            subject_ids = list(dict.fromkeys(u for index in group for u in wanted[index][0]))
            created = calls.run(partial(self._create, subject_ids))
            for index in group:
                outcomes[index] = created if isinstance(created, ConnectorError) else self._submitted(
                    *created, len(wanted[index][0]), wanted[index][1])
        return settle(self.system, outcomes)

    def _create(self, subject_ids: list[str]) -> tuple[str, int]:
        """One regulation for these user ids: (regulate id, HTTP status)."""
        response = self._client.request(
            "POST", REGULATIONS, json={"regulationType": self.settings.regulation_type,
                                       "subjectType": "USER_ID", "subjectIds": subject_ids})
        body = json_answer(response, self.system, CREATE_ROUTE)
        data = body.get("data") if isinstance(body, dict) else None
        regulate_id = data.get("regulateId") if isinstance(data, dict) else None
        if not regulate_id:
            raise PermanentError(self.system, f"no data.regulateId in the answer from {CREATE_ROUTE}")
        return str(regulate_id), response.status_code

    def _submitted(self, regulate_id: str, http_status: int, user_ids: int, note: str) -> EraseResult:
        return EraseResult(
            status="pending", job_ref=regulate_id, poll_after_s=self.settings.poll_after_s,
            evidence=Evidence(reference=f"{regulate_id}{note}"[:200], http_status=http_status,
                              records_affected=user_ids))

    def _read(self, regulate_id: str) -> tuple[dict[str, Any], int] | None:
        """The regulation and the HTTP status; None when Segment forgot it (404 after 90 days: its
        result is unknown, not bad)."""
        response = self._client.request("GET", REGULATION, {"id": regulate_id}, return_statuses=(404,))
        if response.status_code == 404:
            return None
        body = json_answer(response, self.system, POLL_ROUTE)
        data = body.get("data") if isinstance(body, dict) else None
        regulation = data.get("regulation") if isinstance(data, dict) else None
        if not isinstance(regulation, dict):
            raise PermanentError(self.system, f"no data.regulation in the answer from {POLL_ROUTE}")
        return regulation, response.status_code

    def _polled(self, regulate_id: str, regulation: dict[str, Any], http_status: int) -> Outcome:
        """What the regulation's status means for each task it serves (all of them alike: Segment
        reports per destination, never per user id)."""
        status = str(regulation.get("overallStatus", ""))
        evidence = Evidence(reference=regulate_id[:200], http_status=http_status)
        if status in RUNNING:
            return EraseResult(status="pending", job_ref=regulate_id, poll_after_s=self.settings.poll_after_s,
                               evidence=evidence)
        if status == "FINISHED":  # every destination finished: Segment's status shows it done
            residual = [ResidualData(what=SUPPRESSED)] if self.settings.regulation_type.startswith(
                "SUPPRESS") else []
            return EraseResult(status="erased", evidence=evidence.model_copy(
                update={"assurance": "confirmed", "residual": residual}))
        if status == "PARTIAL_SUCCESS":
            held_by = _listed(unfinished_destinations(regulation))
            return PermanentError(self.system, f"regulation {regulate_id} ended PARTIAL_SUCCESS: data is "
                                               f"still held by destinations {held_by}")
        if status in FAILED:
            return PermanentError(self.system, f"regulation {regulate_id} ended {status}")
        return PermanentError(self.system, f"regulation {regulate_id} has unknown status {status!r:.30}")

    def check(self) -> AccessReport:
        """`GET /regulations` (one per page): the token may read the workspace's regulations. Whether
        its role may create them shows only on a create, which would suppress and delete."""
        env = self.settings.token_env
        response = self._client.request("GET", REGULATIONS, params={"pagination.count": "1"},
                                        return_statuses=(403,))
        if response.status_code == 403:
            return AccessReport(reachable=True, authenticated=True, scopes_needed=["read regulations",
                                                                                   CREATE_RIGHT],
                                missing=["read regulations"], credential_env=env,
                                notes=f"{LIST_ROUTE} answered 403: the token's role may not use "
                                      "Deletion and Suppression")
        return AccessReport(reachable=True, authenticated=True, scopes_needed=["read regulations",
                                                                               CREATE_RIGHT],
                            scopes_granted=["read regulations"], unverified=[CREATE_RIGHT],
                            credential_env=env,
                            notes=f"{LIST_ROUTE} answered; creating a regulation cannot be tried without "
                                  "erasing")

    def close(self) -> None:
        self._client.close()
