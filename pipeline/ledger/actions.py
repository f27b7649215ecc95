"""Officer actions on a request, each recorded in the ledger with who and when.

- retry a failed system (a new attempt is published; the request is reopened);
- confirm a manual system (erased, not found, or held under a policy rule);
- extend the deadline (reason required, only within the first month, two months at most);
- refuse the request (reason required, Art. 12(4)): only while nothing of the person's data has been
  erased and no task is under way, since a task already published cannot be called back.

A refusal or an extension owes the person a letter, and so does a completion: each queues a letter
notice (a row of `erasure_notifications` of kind `letter` naming the letter's kind, never its text),
which housekeeping renders from the ledger and delivers to the webhook.

Free text (a confirmation's note, an extension's reason) never enters the append-only chain: the
chain carries its SHA-256, the text a row of `erasure_notes` that `erase_notes` can delete.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any, Literal

import sqlalchemy as sa

from connectors.retention import RetentionPolicy
from pipeline.deadlines import MAX_EXTENSION_MONTHS, add_months, due_at
from pipeline.ledger import dedupe
from pipeline.ledger.chain import open_chain
from pipeline.ledger.rebuild import task_for
from pipeline.ledger.state import RequestStateMachine, Rows, load_rows
from pipeline.ledger.store import Ledger
from pipeline.ledger.tables import notes_table, notifications_table, requests_table, systems_table
from schemas import ErasureOutcome, ErasureTask, Evidence, Hold

ConfirmOutcome = Literal["erased", "not_found", "held"]
LETTER_NOTICE = "letter"  # the `kind` of a notification row that stands for a letter owed to the person
# Systems that have acted (data erased, or erased but for a hold): the request can no longer be refused.
ACTED = ("erased", "held")
# Systems with a task under way: it may still erase, whatever an officer decides now.
UNDER_WAY = ("planned", "pending", "retrying")


class ActionError(Exception):
    """The action is not allowed now; the message says why and what to do."""


def _load(conn: sa.Connection, request_id: str) -> tuple[dict[str, Any], Rows]:
    requests, systems = load_rows(conn, [request_id])
    if request_id not in requests:
        raise ActionError(f"no request {request_id}")
    return requests[request_id], systems.get(request_id, {})


def _not_refused(request: dict[str, Any], request_id: str) -> None:
    if request["status"] == "refused":
        raise ActionError(f"request {request_id} was refused: nothing more is done for it")


def queue_letter(conn: sa.Connection, request_id: str, letter_kind: str, notice_id: str, due: datetime,
                 now: datetime) -> None:
    """Owe the person a letter: a notice housekeeping delivers (the letter is rendered then)."""
    known = conn.execute(sa.select(notifications_table.c.notification_id).where(
        notifications_table.c.notification_id == notice_id)).first()
    if known is None:
        conn.execute(notifications_table.insert().values(
            notification_id=notice_id, request_id=request_id, kind=LETTER_NOTICE, status=letter_kind,
            due_at=due, created_at=now, next_attempt_at=now, attempts=0))


def _system_row(systems: Rows, request_id: str, system: str, status: str,
                awaited: str) -> dict[str, Any]:
    row = systems.get(system)
    if row is None:
        raise ActionError(f"{system} is not planned for request {request_id}")
    if row["status"] != status:
        raise ActionError(f"{system} is {row['status']}: {awaited}")
    return row


def keep_note(conn: sa.Connection, request_id: str, text: str, now: datetime) -> str:
    """Store an officer's free text apart from the chain; returns the digest the chain records."""
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    known = conn.execute(sa.select(notes_table.c.sha256).where(
        notes_table.c.request_id == request_id, notes_table.c.sha256 == digest)).first()
    if known is None:
        conn.execute(notes_table.insert().values(request_id=request_id, sha256=digest, text=text,
                                                 recorded_at=now))
    return digest


def erase_notes(ledger: Ledger, request_id: str) -> int:
    """Erase the officers' free text of a request (the chain keeps the digests); how many notes."""
    with ledger.writer.begin() as conn:
        conn.execute(requests_table.update().where(requests_table.c.request_id == request_id).values(
            extension_reason=None))
        return conn.execute(notes_table.delete().where(notes_table.c.request_id == request_id)).rowcount


def retry_system(ledger: Ledger, request_id: str, system: str, author: str, now: datetime) -> ErasureTask:
    """Reopen a failed system with the next attempt; the caller publishes the returned task."""
    with ledger.writer.begin() as conn:
        request, systems = _load(conn, request_id)
        _not_refused(request, request_id)
        row = _system_row(systems, request_id, system, "failed", "only a failed system can be retried")
        attempt = row["attempt"] + 1
        reopened = request["reopened"] + (1 if request["status"] != "in_progress" else 0)
        key = dedupe.officer_retry(request_id, system, attempt)
        chain = open_chain(conn, [key])
        conn.execute(systems_table.update().where(
            systems_table.c.request_id == request_id, systems_table.c.system == system).values(
            status="retrying", final=False, attempt=attempt, updated_at=now, error=None, silent_redrives=0,
            expected_by=now + timedelta(seconds=row["expected_turnaround_s"])))
        conn.execute(requests_table.update().where(requests_table.c.request_id == request_id).values(
            status="in_progress", completed_at=None, on_time=None, completion_published=False,
            reopened=reopened))
        chain.append(request_id, system, "officer_retry", attempt, "retrying", {"author": author},
                     now, key)
        chain.write(conn)
    return task_for(request, system, attempt)


def confirm_manual(ledger: Ledger, request_id: str, system: str, outcome: ConfirmOutcome, author: str,
                   now: datetime, policy: RetentionPolicy | None = None, category: str | None = None,
                   note: str | None = None) -> str:
    """Record a person's confirmation for a system with no API; returns the request's status."""
    holds: list[Hold] = []
    if outcome == "held" and (policy is None or not category or policy.rule(category) is None):
        raise ActionError("a hold needs a data category with a retention rule in the policy")
    with ledger.writer.begin() as conn:
        request, systems = _load(conn, request_id)
        _not_refused(request, request_id)
        row = _system_row(systems, request_id, system, "manual", "only a manual system awaits confirmation")
        attempt = row["attempt"]
        if outcome == "held":
            assert policy is not None and category is not None
            holds = [policy.hold(category, policy.retain_until(category, request["received_at"]))]
        reference = f"confirmed by {author}"  # the note stays out of the outcome: it is chained
        confirmed = dedupe.manual_confirmed(request_id, system, attempt, outcome)
        chain = open_chain(conn, [dedupe.outcome(request_id, system, attempt, outcome),
                                  dedupe.completion(request_id, request["reopened"]), confirmed])
        machine = RequestStateMachine({request_id: request}, {request_id: systems}, chain, now)
        machine.outcome(ErasureOutcome(
            request_id=request_id, system=system, attempt=attempt, status=outcome, holds=holds,
            evidence=Evidence(reference=reference[:200]), occurred_at=now))
        note_sha256 = keep_note(conn, request_id, note, now) if note else None
        chain.append(request_id, system, "manual_confirmed", attempt, outcome,
                     {"author": author, "note_sha256": note_sha256}, now, confirmed)
        machine.complete_if_final(request_id)
        machine.write(conn)
        return machine.status(request_id)


def extend_deadline(ledger: Ledger, request_id: str, months: int, reason: str, author: str,
                    now: datetime) -> datetime:
    """Art. 12(3): up to two further months, with the reason, decided within the first month."""
    if not reason.strip():
        raise ActionError("an extension needs its reason (the person must be told it)")
    if not 1 <= months <= MAX_EXTENSION_MONTHS:
        raise ActionError(f"an extension is 1 or {MAX_EXTENSION_MONTHS} months")
    with ledger.writer.begin() as conn:
        request, _ = _load(conn, request_id)
        received = request["received_at"]
        if request["status"] != "in_progress":
            raise ActionError(f"request {request_id} is {request['status']}: nothing to extend")
        if now > add_months(received, 1):
            raise ActionError("the first month is over: an extension had to be decided within it")
        total = request["extension_months"] + months
        if total > MAX_EXTENSION_MONTHS:
            raise ActionError(f"already extended by {request['extension_months']} month(s); "
                              f"{MAX_EXTENSION_MONTHS} at most in all")
        new_due = due_at(received, total)
        key = dedupe.deadline_extended(request_id, total)
        chain = open_chain(conn, [key])
        conn.execute(requests_table.update().where(requests_table.c.request_id == request_id).values(
            due_at=new_due, extension_months=total, extension_reason=reason.strip()))
        chain.append(request_id, None, "deadline_extended", None, "in_progress",
                     {"author": author, "months": months, "due_at": new_due.isoformat(),
                      "reason_sha256": keep_note(conn, request_id, reason.strip(), now)}, now, key)
        queue_letter(conn, request_id, "extension", f"{key}:letter", new_due, now)
        chain.write(conn)
    return new_due


def _refusable(request: dict[str, Any], systems: Rows, request_id: str) -> None:
    status = request["status"]
    if status in ("completed", "completed_with_holds"):
        raise ActionError(f"request {request_id} is already {status} (on {request['completed_at']:%Y-%m-%d}):"
                          " its data was erased as asked; it can no longer be refused")
    if status == "refused":
        raise ActionError(f"request {request_id} was already refused")
    for name, row in sorted(systems.items()):
        if row["status"] in ACTED:
            raise ActionError(f"{name} already reported {row['status']}: the person's data is erased there, "
                              "so a refusal would not be true; finish the request instead")
        if row["status"] in UNDER_WAY:
            raise ActionError(f"{name} is {row['status']}: a task is under way and may still erase; "
                              "refuse once it has reported (failed or not found), or finish the request")


def refuse(ledger: Ledger, request_id: str, reason: str, author: str, now: datetime) -> None:
    """Art. 12(4): decline to act, with the reason the person is told; the request ends `refused`.

    Only while nothing was erased and no task is under way (every system manual, failed or not
    found): a published task cannot be called back, and a refusal letter must be true. Manual and
    failed systems stay as they are; no retry or confirmation is accepted afterwards."""
    if not reason.strip():
        raise ActionError("a refusal needs its reason (Art. 12(4): the person must be told it)")
    with ledger.writer.begin() as conn:
        request, systems = _load(conn, request_id)
        _refusable(request, systems, request_id)
        key = dedupe.refused(request_id)
        chain = open_chain(conn, [key])
        on_time = now <= request["due_at"]
        # Nothing to announce on the completed topic (no erasure was completed): the letter tells.
        conn.execute(requests_table.update().where(requests_table.c.request_id == request_id).values(
            status="refused", completed_at=now, on_time=on_time, completion_published=True))
        chain.append(request_id, None, "refused", None, "refused",
                     {"author": author, "on_time": on_time,
                      "reason_sha256": keep_note(conn, request_id, reason.strip(), now)}, now, key)
        queue_letter(conn, request_id, "refusal", f"{key}:letter", request["due_at"], now)
        chain.write(conn)
