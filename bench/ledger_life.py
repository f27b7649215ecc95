"""One request's life in the ledger, played through the pipeline's own state machine (for the seeder).

A request is planned to 4-13 systems; each system answers as its kind does (processors at
once, sometimes after a retry or a silence and a re-drive; asynchronous ones pending first;
the site database and Stripe keeping data under legal holds; a manual system confirmed by an
officer days later; a few failing, some of those retried by an officer). Holds that end before
`end` are released, data keys destroyed after the grace period, a few deadlines extended. Only
what happened by `end` is applied: recent requests are still in progress, stuck ones overdue.

`RequestStateMachine` builds the rows and chain entries exactly as the aggregator does; the chain
entries are only collected here (`DeferredChain`): the seeder hashes them with `ChainWriter`
in time order across all requests, as a live ledger interleaves them.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from connectors.retention import RetentionPolicy
from pipeline.deadlines import due_at
from pipeline.ledger import dedupe
from pipeline.ledger.chain import GENESIS_HASH, ChainWriter, canonical_json
from pipeline.ledger.state import RequestStateMachine
from schemas import (
    ErasureOutcome,
    ErasurePlanned,
    Evidence,
    Hold,
    OutcomeError,
    PlannedTarget,
    SealedIdentities,
)

CHANNELS = {"contact_form": 55, "email": 14, "http_api": 12, "retention": 13, "postal": 3, "other": 3}
VERIFICATION = {"contact_form": "email_confirmation", "email": "email_confirmation", "http_api":
                "logged_in_session", "retention": "none", "postal": "identity_document", "other": "other"}
CORE = ("site-db", "sessions", "uploads")
# system: (how often a request names it, kind, turnaround s)
OPTIONAL = {"brevo": (55, "sync", 60), "stripe": (50, "stripe", 60), "mailchimp": (30, "sync", 60),
            "mailjet": (20, "sync", 60), "hubspot": (30, "sync", 60), "zendesk": (40, "sync", 120),
            "intercom": (25, "sync", 60), "segment": (35, "async", 86400), "sendgrid": (30, "async", 3600),
            "mixpanel": (30, "async", 86400), "ga4": (45, "async", 172800), "auth0": (40, "sync", 60),
            "crm-export": (10, "sync", 300), "paper-vendor": (6, "manual", 604800)}
OFFICERS = ("olivia", "oscar", "odile")
OUTCOME_DEFAULTS: dict[str, Any] = {"event_type": "erasure.outcome", "purpose": "erase", "holds": [],
                                    "evidence": None, "error": None, "next_attempt_at": None}
Step = tuple[datetime, int, str, dict[str, Any]]
# A chain entry: recorded_at, request_id, system, kind, attempt, status, payload (JSON), dedupe_key.
Entry = tuple[datetime, str, str | None, str, int | None, str | None, str, str]
ENTRY_FIELDS = ("recorded_at", "request_id", "system", "kind", "attempt", "status", "payload", "dedupe_key")


class DeferredChain(ChainWriter):
    """The machine's appends as `ChainWriter` builds them (payload in the ledger's canonical JSON),
    without position and hashes: the seeder links them in time order across requests."""

    def __init__(self) -> None:
        super().__init__(GENESIS_HASH, 0, set())
        self.entries: list[Entry] = []

    def append(self, request_id: str, system: str | None, kind: str, attempt: int | None,
               status: str | None, payload: dict[str, Any], now: datetime, dedupe_key: str) -> bool:
        if dedupe_key in self.known:
            return False
        self.known.add(dedupe_key)
        self.entries.append((now, request_id, system, kind, attempt, status, canonical_json(payload),
                             dedupe_key))
        return True


@dataclass
class Life:
    request: dict[str, Any]
    systems: list[dict[str, Any]]
    holds: list[dict[str, Any]]
    notifications: list[dict[str, Any]]
    data_key: dict[str, Any]
    notes: list[dict[str, Any]] = field(default_factory=list)
    chain: list[Entry] = field(default_factory=list)


class Simulator:
    def __init__(self, rng: random.Random, end: datetime, policy: RetentionPolicy, grace_s: float) -> None:
        self.rng, self.end, self.policy, self.grace_s = rng, end, policy, grace_s

    # -- what happens to one system ---------------------------------------------------------
    def _outcome(self, at: datetime, system: str, attempt: int, status: str, **extra: Any) -> Step:
        return (at, 0, "outcome", {"system": system, "attempt": attempt, "status": status, **extra})

    def _holds(self, system: str, received: datetime) -> list[Hold]:
        rng, categories = self.rng, ["invoices", "card_data", "fraud_signals", "accounting_records"]
        kept = [c for c in categories if rng.random() < (0.6 if c == "invoices" else 0.3)] or ["invoices"]
        if system == "stripe":
            kept = [c for c in kept if c in ("invoices", "card_data")] or ["invoices"]
        holds = []
        for category in kept:
            record_date = received - timedelta(days=rng.uniform(0, 90))
            until = self.policy.retain_until(category, received, record_date)
            holds.append(self.policy.hold(category, until))
        return holds

    def system_steps(self, system: str, kind: str, planned: datetime, turnaround_s: float) -> list[Step]:
        rng, r = self.rng, self.rng.random()
        at = planned + timedelta(seconds=rng.uniform(0.2, 20))
        ok = Evidence(http_status=204, records_affected=1, assurance="confirmed")
        if kind == "manual":
            wait = timedelta(days=rng.expovariate(1 / 12))
            asked = Evidence(reference="e-mail to vendor DPO")
            return [self._outcome(at, system, 1, "manual", evidence=asked),
                    (at + wait, 0, "confirm", {"system": system, "author": rng.choice(OFFICERS)})]
        if kind == "async":
            job = Evidence(reference=f"job-{rng.getrandbits(48):012x}")
            done = at + timedelta(seconds=rng.uniform(0.2, 2.5) * turnaround_s)
            return [self._outcome(at, system, 1, "pending", evidence=job),
                    self._outcome(done, system, 1, "erased",
                                  evidence=Evidence(reference=job.reference, assurance="accepted",
                                                    completes_by=done + timedelta(days=7)))]
        steps: list[Step] = []
        attempt = 1
        if r < 0.005:  # it never answers: re-driven once it went silent, then overdue
            return [(planned + timedelta(seconds=turnaround_s * 2), 0, "redrive", {"system": system})]
        if r < 0.03:  # silent for a while, re-driven, then answers
            silent = planned + timedelta(seconds=turnaround_s * 2)
            steps.append((silent, 0, "redrive", {"system": system}))
            attempt, at = 2, silent + timedelta(minutes=rng.uniform(1, 600))
        elif r < 0.07:  # rate limited, retried later
            steps.append(self._outcome(at, system, 1, "retrying", next_attempt_at=at + timedelta(seconds=30),
                                       error=OutcomeError(kind="retryable", retry_after_s=30,
                                                          message="HTTP 429 from DELETE /contacts/{id}")))
            attempt, at = 2, at + timedelta(seconds=rng.uniform(30, 90))
        elif r < 0.08:  # a permanent error; an officer retries half of them
            error = OutcomeError(kind="permanent", message="HTTP 400 from DELETE /contacts/{id}")
            steps.append(self._outcome(at, system, 1, "failed", error=error))
            if rng.random() < 0.5:
                retry = at + timedelta(days=rng.uniform(0.5, 6))
                steps.append((retry, 0, "officer_retry", {"system": system, "author": rng.choice(OFFICERS)}))
                steps.append(self._outcome(retry + timedelta(seconds=5), system, 2, "erased", evidence=ok))
            return steps
        held = (kind == "stripe" and rng.random() < 0.35) or (system == "site-db" and rng.random() < 0.45)
        if held:
            steps.append(self._outcome(at, system, attempt, "held", holds=self._holds(system, planned),
                                       evidence=Evidence(records_affected=rng.randint(1, 40))))
        elif rng.random() < 0.35:
            steps.append(self._outcome(at, system, attempt, "not_found",
                                       evidence=Evidence(http_status=404, records_affected=0)))
        else:
            steps.append(self._outcome(at, system, attempt, "erased", evidence=ok))
        return steps

    # -- the request ----------------------------------------------------------------------------
    def targets(self) -> list[tuple[str, str, float]]:
        rng = self.rng
        count = rng.randint(1, 10)  # with the three internal stores: 4 to 13 systems
        keyed = sorted(OPTIONAL, key=lambda s: rng.random() ** (1 / OPTIONAL[s][0]), reverse=True)
        chosen = [(s, OPTIONAL[s][1], float(OPTIONAL[s][2])) for s in keyed[:count]]
        return [*[(s, "store", 60.0) for s in CORE], *chosen]

    def plan(self, request_id: str, received: datetime, subject_ref: str,
             targets: list[tuple[str, str, float]]) -> ErasurePlanned:
        channel = self.rng.choices(list(CHANNELS), weights=list(CHANNELS.values()))[0]
        sealed = SealedIdentities(alg="secretbox-xsalsa20poly1305", key_id=request_id,
                                  ciphertext="c2VhbGVkIGJ5IHRoZSBzZWVkZXI=")
        return ErasurePlanned(request_id=request_id, received_at=received, due_at=due_at(received),
                              subject_ref=subject_ref, identities=sealed, channel=channel,
                              verification=VERIFICATION[channel], planned_at=received,
                              targets=[PlannedTarget(system=s, expected_turnaround_s=t)
                                       for s, _, t in targets])


class Story:
    """Plays one request's steps, in time order, on the state machine; what `end` has not reached
    yet has not happened."""

    def __init__(self, sim: Simulator, plan: ErasurePlanned) -> None:
        self.sim, self.rid, self.chain = sim, plan.request_id, DeferredChain()
        self.machine = RequestStateMachine({}, {}, self.chain, plan.planned_at)
        self.machine.plan(plan)
        self.request = self.machine.requests[self.rid]
        self.rows = self.machine.systems[self.rid]
        self.notes: list[dict[str, Any]] = []

    def play(self, steps: list[Step]) -> None:
        for at, _, kind, data in sorted(steps, key=lambda s: (s[0], s[1])):
            if at > self.sim.end:
                break
            self.machine.now = at
            getattr(self, kind)(at, **data)
            if all(row["final"] for row in self.rows.values()):  # as the aggregator, after each batch
                self.machine.complete_touched()

    def outcome(self, at: datetime, **fields: Any) -> None:
        # Built from values of the right types already: validation would only cost time here. Every
        # field is given: pydantic's model_construct is slow to fill in a default_factory.
        self.machine.outcome(ErasureOutcome.model_construct(**{**OUTCOME_DEFAULTS, **fields},
                                                            request_id=self.rid, occurred_at=at))

    def redrive(self, at: datetime, system: str) -> None:  # as Housekeeping.redrive_silent
        row = self.rows[system]
        if row["final"]:
            return
        attempt = row["attempt"] + 1
        self.chain.append(self.rid, system, "redriven", attempt, row["status"],
                          {"silent_since": row["updated_at"].isoformat()}, at,
                          dedupe.redriven(self.rid, system, attempt))
        later = 0 if self.sim.end < self.request["due_at"] else self.sim.rng.randint(3, 7)  # counted only
        row.update(attempt=attempt + later, redrives=row["redrives"] + 1 + later, silent_redrives=1 + later,
                   updated_at=at, expected_by=min(at + timedelta(seconds=2 * row["expected_turnaround_s"]),
                                                  self.request["due_at"]))

    def officer_retry(self, at: datetime, system: str, author: str) -> None:  # as actions.retry_system
        row, request = self.rows[system], self.request
        attempt = row["attempt"] + 1
        reopened = request["reopened"] + (1 if request["status"] != "in_progress" else 0)
        row.update(status="retrying", final=False, attempt=attempt, updated_at=at, error=None,
                   silent_redrives=0, expected_by=at + timedelta(seconds=row["expected_turnaround_s"]))
        request.update(status="in_progress", completed_at=None, on_time=None, completion_published=False,
                       reopened=reopened)
        self.chain.append(self.rid, system, "officer_retry", attempt, "retrying", {"author": author}, at,
                          dedupe.officer_retry(self.rid, system, attempt))

    def confirm(self, at: datetime, system: str, author: str) -> None:  # as actions.confirm_manual
        attempt = self.rows[system]["attempt"]
        status = "erased" if self.sim.rng.random() < 0.8 else "not_found"
        self.outcome(at, system=system, attempt=attempt, status=status,
                     evidence=Evidence(reference=f"confirmed by {author}"))
        self.chain.append(self.rid, system, "manual_confirmed", attempt, status,
                          {"author": author, "note_sha256": None}, at,
                          dedupe.manual_confirmed(self.rid, system, attempt, status))

    def extend(self, at: datetime, author: str) -> None:  # as actions.extend_deadline
        if self.request["status"] != "in_progress":
            return
        reason = "the request covers several accounts and a paper archive"
        digest = hashlib.sha256(reason.encode()).hexdigest()
        new_due = due_at(self.request["received_at"], 1)
        self.request.update(due_at=new_due, extension_months=1, extension_reason=reason)
        self.notes.append({"request_id": self.rid, "sha256": digest, "text": reason, "recorded_at": at})
        self.chain.append(self.rid, None, "deadline_extended", None, "in_progress",
                          {"author": author, "months": 1, "due_at": new_due.isoformat(),
                           "reason_sha256": digest}, at, dedupe.deadline_extended(self.rid, 1))

    def release_ended_holds(self) -> datetime | None:
        """As Housekeeping.request_releases then the store's release outcome; the last release."""
        last = None
        for hold in sorted(self.machine.new_holds, key=lambda h: h["retain_until"]):
            hold.setdefault("release_requested_at", None)
            hold.setdefault("released_at", None)
        for system in sorted({h["system"] for h in self.machine.new_holds}):
            holds = [h for h in self.machine.new_holds if h["system"] == system]
            for until in sorted({h["retain_until"] for h in holds}):
                asked = at = until + timedelta(seconds=self.sim.rng.uniform(1, 5))
                done = at + timedelta(seconds=self.sim.rng.uniform(1, 60))
                group = [h for h in holds if h["released_at"] is None and h["retain_until"] <= at]
                if done > self.sim.end or not group:
                    continue
                row = self.rows[system]
                row["attempt"] += 1
                self.chain.append(self.rid, system, "release_requested", row["attempt"], "held",
                                  {"categories": sorted(h["data_category"] for h in group),
                                   "retain_until": str(max(h["retain_until"] for h in group))},
                                  asked, dedupe.release_requested(self.rid, system, row["attempt"]))
                self.machine.now = done
                self.machine.release(ErasureOutcome(
                    request_id=self.rid, system=system, attempt=row["attempt"], status="erased",
                    purpose="release", evidence=Evidence(records_affected=len(group)), occurred_at=done))
                for h in group:
                    h.update(release_requested_at=asked, released_at=done)
                last = done
        return last

    def destroy_key(self, last_release: datetime | None) -> dict[str, Any]:
        """The key store's row; the key destroyed `grace_s` after the request finished (as KeyStore)."""
        request, sim = self.request, self.sim
        created = request["planned_at"]
        row = {"request_id": self.rid, "data_key": sim.rng.randbytes(60), "created_at": created,
               "tasks_published_at": created, "destroyed_at": None}
        finished = None
        if request["status"] == "completed":
            finished = request["completed_at"]
        elif request["status"] == "completed_with_holds" and all(
                h["released_at"] for h in self.machine.new_holds):
            finished = last_release
        if finished is None:
            return row
        at = finished + timedelta(seconds=sim.grace_s + sim.rng.uniform(1, 5))
        if at <= sim.end:
            self.chain.append(self.rid, None, "data_key_destroyed", None, None, {"grace_s": sim.grace_s}, at,
                              dedupe.data_key_destroyed(self.rid))
            row.update(data_key=None, destroyed_at=at)
        return row


def live(sim: Simulator, request_id: str, received: datetime, subject_ref: str) -> Life:
    """Everything the ledger holds about one request once `sim.end` has come."""
    targets = sim.targets()
    plan = sim.plan(request_id, received, subject_ref, targets)
    story = Story(sim, plan)
    steps = [step for system, kind, turnaround in targets
             for step in sim.system_steps(system, kind, plan.planned_at, turnaround)]
    if sim.rng.random() < 0.01:
        steps.append((received + timedelta(days=sim.rng.uniform(2, 20)), 1, "extend",
                      {"author": sim.rng.choice(OFFICERS)}))
    story.play(steps)
    key_row = story.destroy_key(story.release_ended_holds())
    request = story.request
    request["completion_published"] = request["status"] != "in_progress"
    for note in story.machine.notifications:
        note.update(delivered_at=note["created_at"] + timedelta(seconds=1), attempts=1)
    return Life(request, list(story.rows.values()), story.machine.new_holds, story.machine.notifications,
                key_row, story.notes, story.chain.entries)
