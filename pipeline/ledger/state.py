"""The request state machine: plans and outcomes applied to a request's rows, then written at once.

A request is planned (one row per target system), each system moves through its
outcomes until final (erased, not found, held, failed, ...), and the request completes
once every system is final: completed, completed_with_holds, or needs_attention. A
release task's outcome ends holds. Every step appends to the hash chain first: an event
already recorded (same dedupe key) changes nothing.

The machine works on in-memory rows; `load` reads them (and locks the chain) in the
caller's transaction and `write` saves what changed, so a batch costs a few statements.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from pipeline.ledger import dedupe
from pipeline.ledger.chain import ChainWriter, canonical_json, lock_head, open_chain
from pipeline.ledger.rebuild import completion_event
from pipeline.ledger.tables import (
    chunks,
    holds_table,
    notifications_table,
    requests_table,
    system_row_update,
    systems_table,
    utc,
)
from schemas import FINAL_SYSTEM_STATUSES, ErasureCompleted, ErasureOutcome, ErasurePlanned

Rows = dict[str, dict[str, Any]]
SYSTEM_FIELDS = ("status", "attempt", "final", "updated_at", "expected_by", "evidence", "holds", "error",
                 "silent_redrives")
# Built once: a statement built per batch is compiled from the cache, but its cache key is not free.
UPDATE_SYSTEMS = system_row_update.values({f: sa.bindparam(f) for f in SYSTEM_FIELDS})
COMPLETE_REQUESTS = requests_table.update().where(
    requests_table.c.request_id == sa.bindparam("b_request_id")).values(
    status=sa.bindparam("status"), completed_at=sa.bindparam("completed_at"), on_time=sa.bindparam("on_time"))


def load_rows(conn: sa.Connection, request_ids: Iterable[str]) -> tuple[Rows, dict[str, Rows]]:
    """The request rows by id, and their system rows by id then system, read under the chain's lock.

    Locked first: rows read before waiting for another writer (another worker's aggregator, an
    officer, a re-drive) would miss what it committed, e.g. another system's final outcome, and
    a request whose systems are all final would never complete."""
    lock_head(conn)
    requests: Rows = {}
    systems: dict[str, Rows] = {}
    for chunk in chunks(sorted(set(request_ids))):
        for row in conn.execute(sa.select(requests_table).where(requests_table.c.request_id.in_(chunk))):
            requests[row.request_id] = dict(row._mapping)
        for row in conn.execute(sa.select(systems_table).where(systems_table.c.request_id.in_(chunk))):
            systems.setdefault(row.request_id, {})[row.system] = dict(row._mapping)
    return requests, systems


def completed_status(system_statuses: set[str]) -> str:
    if "failed" in system_statuses:
        return "needs_attention"
    return "completed_with_holds" if "held" in system_statuses else "completed"


class RequestStateMachine:
    """Plans and outcomes of one batch, applied in order to the rows they concern."""

    def __init__(self, requests: Rows, systems: dict[str, Rows], chain: ChainWriter, now: datetime) -> None:
        self.requests, self.systems, self.chain, self.now = requests, systems, chain, now
        self.new_requests: list[str] = []
        self.new_systems: list[tuple[str, str]] = []
        self.dirty_systems: set[tuple[str, str]] = set()
        self.dirty_requests: set[str] = set()
        self.touched: set[str] = set()
        self.new_holds: list[dict[str, Any]] = []
        self.notifications: list[dict[str, Any]] = []
        self.released: list[tuple[str, str]] = []
        self.still_held: dict[tuple[str, str], dict[str, datetime]] = {}

    @classmethod
    def load(cls, conn: sa.Connection, request_ids: Iterable[str], now: datetime,
             dedupe_keys: Iterable[str] = ()) -> RequestStateMachine:
        """The machine over these requests' rows, the chain locked and these events looked up."""
        requests, systems = load_rows(conn, request_ids)
        ids = sorted(set(request_ids))
        completions = [dedupe.completion(rid, requests[rid]["reopened"] if rid in requests else 0)
                       for rid in ids]
        return cls(requests, systems, open_chain(conn, [*dedupe_keys, *completions]), now)

    def status(self, request_id: str) -> str:
        return str(self.requests[request_id]["status"])

    def apply(self, event: ErasurePlanned | ErasureOutcome) -> None:
        if isinstance(event, ErasurePlanned):
            self.plan(event)
        else:
            self.outcome(event)

    def plan(self, plan: ErasurePlanned) -> None:
        if plan.request_id in self.requests:
            return
        self.requests[plan.request_id] = {
            "request_id": plan.request_id, "subject_ref": plan.subject_ref,
            "received_at": utc(plan.received_at), "due_at": utc(plan.due_at),
            "planned_at": utc(plan.planned_at),
            "status": "in_progress", "completed_at": None, "on_time": None,
            "completion_published": False, "sealed_identities": plan.identities.model_dump_json(),
            "scope": plan.scope.model_dump_json() if plan.scope else None,
            "channel": plan.channel, "verification": plan.verification,
            "extension_months": 0, "extension_reason": None, "reopened": 0,
        }
        self.new_requests.append(plan.request_id)
        rows = self.systems.setdefault(plan.request_id, {})
        for target in plan.targets:
            rows[target.system] = {
                "request_id": plan.request_id, "system": target.system, "status": "planned",
                "attempt": 1, "final": False, "expected_turnaround_s": target.expected_turnaround_s,
                "expected_by": self.now + timedelta(seconds=target.expected_turnaround_s),
                "updated_at": self.now, "evidence": None, "holds": None, "error": None,
                "redrives": 0, "silent_redrives": 0}
            self.new_systems.append((plan.request_id, target.system))
        self.chain.append(plan.request_id, None, "planned", None, "in_progress",
                          {"targets": [t.system for t in plan.targets],
                           "due_at": plan.due_at.isoformat(),
                           "received_at": plan.received_at.isoformat()},
                          self.now, dedupe.of_event(plan))
        self.touched.add(plan.request_id)

    def release(self, outcome: ErasureOutcome) -> None:
        """The outcome of a release task: a hold ended and its data was erased (or was gone).

        A store checks each row's own end of hold: `held` names what it still keeps (a clock
        ahead of the store's, a forged task). Those categories stay in force, asked again at
        the end the store gave; the other categories asked for are released."""
        if outcome.system not in self.systems.get(outcome.request_id, {}):
            return
        done = outcome.status in ("erased", "not_found")
        kind = "released" if done else "release_outcome"
        if self.chain.append(outcome.request_id, outcome.system, kind, outcome.attempt, outcome.status,
                             outcome.model_dump(mode="json", exclude={"event_type"}), self.now,
                             dedupe.of_event(outcome)) and (done or outcome.status == "held"):
            self.released.append((outcome.request_id, outcome.system))
            self.still_held[(outcome.request_id, outcome.system)] = {
                h.data_category: h.retain_until for h in outcome.holds}

    def outcome(self, outcome: ErasureOutcome) -> None:
        if outcome.purpose == "release":
            self.release(outcome)
            return
        row = self.systems.get(outcome.request_id, {}).get(outcome.system)
        if row is None or row["final"]:
            return  # not planned, or already final: a duplicate changes nothing
        final = outcome.status in FINAL_SYSTEM_STATUSES
        if not final and outcome.attempt < row["attempt"]:
            return  # an interim report from an attempt already superseded (re-driven)
        if not self.chain.append(outcome.request_id, outcome.system, "outcome", outcome.attempt,
                                 outcome.status, outcome.model_dump(mode="json", exclude={"event_type"}),
                                 self.now, dedupe.of_event(outcome)):
            return
        next_at = utc(outcome.next_attempt_at) or self.now
        attempt = outcome.attempt + 1 if outcome.status == "retrying" else outcome.attempt
        row.update(
            status=outcome.status, attempt=max(attempt, row["attempt"]), final=final,
            updated_at=self.now, silent_redrives=0,  # it spoke: a later silence is a new one
            expected_by=max(next_at, self.now) + timedelta(seconds=row["expected_turnaround_s"]),
            evidence=outcome.evidence.model_dump_json() if outcome.evidence else row["evidence"],
            holds=canonical_json([h.model_dump(mode="json") for h in outcome.holds]) if outcome.holds
            else row["holds"],
            error=outcome.error.model_dump_json() if outcome.error else None,
        )
        self.dirty_systems.add((outcome.request_id, outcome.system))
        if final:
            self.touched.add(outcome.request_id)
        if outcome.status == "held":
            self.new_holds.extend(
                {"request_id": outcome.request_id, "system": outcome.system,
                 "data_category": h.data_category, "legal_basis": h.legal_basis, "citation": h.citation,
                 "retain_until": h.retain_until, "recorded_at": self.now}
                for h in outcome.holds)

    def complete_if_final(self, request_id: str) -> ErasureCompleted | None:
        request = self.requests.get(request_id)
        if request is None or request["status"] != "in_progress":
            return None
        systems = sorted(self.systems.get(request_id, {}).values(), key=lambda s: s["system"])
        if not all(s["final"] for s in systems):
            return None
        status = completed_status({s["status"] for s in systems})
        due = request["due_at"]
        on_time = self.now <= due
        request.update(status=status, completed_at=self.now, on_time=on_time)
        self.dirty_requests.add(request_id)
        key = dedupe.completion(request_id, request["reopened"])
        self.chain.append(request_id, None, "completed", None, status, {"on_time": on_time},
                          self.now, key)
        self.notifications.append({
            "notification_id": key, "request_id": request_id, "kind": "completed", "status": status,
            "due_at": due, "created_at": self.now, "next_attempt_at": self.now, "attempts": 0})
        return completion_event(request, systems)

    def complete_touched(self) -> list[ErasureCompleted]:
        """The completion of every request this batch touched that is now finished."""
        return [c for rid in sorted(self.touched) if (c := self.complete_if_final(rid))]

    def write(self, conn: sa.Connection) -> None:
        if self.new_requests:
            conn.execute(requests_table.insert(), [self.requests[r] for r in self.new_requests])
        new_systems = set(self.new_systems)
        if new_systems:
            conn.execute(systems_table.insert(), [self.systems[r][s] for r, s in self.new_systems])
        updates = [{"b_request_id": r, "b_system": s, **{f: self.systems[r][s][f] for f in SYSTEM_FIELDS}}
                   for r, s in sorted(self.dirty_systems) if (r, s) not in new_systems]
        if updates:
            conn.execute(UPDATE_SYSTEMS, updates)
        if self.dirty_requests:
            conn.execute(COMPLETE_REQUESTS, [
                {"b_request_id": r, "status": self.requests[r]["status"],
                 "completed_at": self.requests[r]["completed_at"], "on_time": self.requests[r]["on_time"]}
                for r in sorted(self.dirty_requests)])
        if self.new_holds:
            conn.execute(holds_table.insert(), self.new_holds)
        if self.notifications:
            conn.execute(notifications_table.insert(), self.notifications)
        for request_id, system in self.released:
            still_held = self.still_held.get((request_id, system), {})
            # Only the holds this release was asked for: one that ends later stays in force.
            asked = sa.and_(holds_table.c.request_id == request_id, holds_table.c.system == system,
                            holds_table.c.release_requested_at.is_not(None),
                            holds_table.c.released_at.is_(None))
            conn.execute(holds_table.update().where(
                asked, holds_table.c.data_category.not_in(sorted(still_held))).values(released_at=self.now))
            for category, until in sorted(still_held.items()):
                conn.execute(holds_table.update().where(
                    asked, holds_table.c.data_category == category,
                    holds_table.c.retain_until < until).values(retain_until=until))
                conn.execute(holds_table.update().where(asked, holds_table.c.data_category == category)
                             .values(release_requested_at=None))
        self.chain.write(conn)
