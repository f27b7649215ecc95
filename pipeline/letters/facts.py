"""The facts a letter states, read from the ledger and nowhere else (plus the register's names).

What was erased and where (each system the request was sent to, by the name the person knows, with
the categories of data it held), what was kept, in which category, under which law and until when
(the ledger's holds: the policy's legal basis and citation as the system reported them), and, for a
refusal or an extension, the decision, its date and its reason. The person's identity is not among
them: a letter names the request by its id, and the contact-form backend knows whom it is for.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from connectors.retention import RetentionPolicy
from pipeline.deadlines import due_at
from pipeline.ledger import Ledger, RequestView, SystemView
from pipeline.ledger.views import ERASED_NOTE, note_text
from pipeline.register import SystemEntry, SystemsRegister

LetterKind = Literal["completion", "extension", "refusal"]
LETTER_KINDS: tuple[LetterKind, ...] = ("completion", "extension", "refusal")
FINISHED = ("completed", "completed_with_holds")


class LetterError(Exception):
    """No such letter can be written now; the message says why and what to do."""


@dataclass(frozen=True)
class Residual:
    what: str
    until: datetime | None


@dataclass(frozen=True)
class Place:
    """A system the request was sent to, and what it did."""

    system: str
    name: str
    kind: str  # processor, internal, or unknown (no longer in the register)
    location: str | None
    outcome: str
    categories: tuple[str, ...]  # the categories it holds, per the register (scoped to the request's)
    assurance: str | None = None
    completes_by: datetime | None = None
    residual: tuple[Residual, ...] = ()


@dataclass(frozen=True)
class Kept:
    """A category of data kept under a legal hold."""

    category: str
    place: str
    legal_basis: str
    citation: str
    retain_until: datetime
    released_at: datetime | None


@dataclass(frozen=True)
class LetterFacts:
    kind: LetterKind
    request_id: str
    status: str
    received_at: datetime
    first_due_at: datetime
    due_at: datetime
    completed_at: datetime | None
    on_time: bool | None
    places: tuple[Place, ...]
    kept: tuple[Kept, ...]
    recipients: tuple[Place, ...] | None  # Art. 19, when the person asked for them: the processors
    extension_months: int
    reason: str | None  # of the refusal or the extension
    decided_at: datetime | None
    category_words: dict[str, str]  # the policy's own description of each category
    sender: str | None
    written_at: datetime

    @property
    def internal(self) -> tuple[Place, ...]:
        return tuple(p for p in self.places if p.kind == "internal")

    @property
    def others(self) -> tuple[Place, ...]:
        """Systems no longer in the register: what they did is known, not what they are."""
        return tuple(p for p in self.places if p.kind not in ("internal", "processor"))

    @property
    def processors(self) -> tuple[Place, ...]:
        return tuple(p for p in self.places if p.kind == "processor")


def default_kind(view: RequestView) -> LetterKind:
    """The letter a request's state calls for; an error saying what to do when none does."""
    if view.status == "refused":
        return "refusal"
    if view.status in FINISHED:
        return "completion"
    if view.status == "in_progress" and view.extension_months:
        return "extension"
    if view.status == "needs_attention":
        failed = ", ".join(s.system for s in view.systems if s.status == "failed")
        raise LetterError(f"request {view.request_id} needs attention ({failed} failed): retry or confirm "
                          "it first; the person gets the completion letter once every system is done")
    raise LetterError(f"request {view.request_id} is {view.status}: no letter is due yet (a completion "
                      "letter once it is finished, an extension letter once its deadline is extended)")


def _check_kind(view: RequestView, kind: LetterKind) -> None:
    if kind == "completion" and view.status not in FINISHED:
        raise LetterError(f"request {view.request_id} is {view.status}: a completion letter is written "
                          "once it is completed")
    if kind == "refusal" and view.status != "refused":
        raise LetterError(f"request {view.request_id} is {view.status}, not refused: no refusal letter")
    if kind == "extension" and not view.extension_months:
        raise LetterError(f"request {view.request_id} has no extension: no extension letter")


def _entry(register: SystemsRegister | None, system: str) -> SystemEntry | None:
    return next((e for e in register.systems if e.id == system), None) if register else None


def _place(view: SystemView, entry: SystemEntry | None, scope_categories: set[str] | None) -> Place:
    categories = list(entry.data_categories if entry else [])
    if scope_categories is not None:
        categories = [c for c in categories if c in scope_categories]
    evidence = view.evidence or {}
    residual = tuple(Residual(r["what"], _moment(r.get("until"))) for r in evidence.get("residual") or [])
    return Place(system=view.system, name=(entry.name if entry and entry.name else view.system),
                 kind=entry.kind if entry else "unknown", location=entry.location if entry else None,
                 outcome=view.status, categories=tuple(categories), assurance=evidence.get("assurance"),
                 completes_by=_moment(evidence.get("completes_by")), residual=residual)


def _moment(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None


def _decision(ledger: Ledger, request_id: str, kind: LetterKind) -> tuple[str | None, datetime | None]:
    """The reason and the date of the last refusal or extension recorded in the chain."""
    event_kind = {"refusal": "refused", "extension": "deadline_extended"}.get(kind)
    if event_kind is None:
        return None, None
    events = [e for e in ledger.events(request_id) if e.kind == event_kind]
    if not events:
        raise LetterError(f"request {request_id}: no {event_kind.replace('_', ' ')} event in the ledger")
    last = events[-1]
    reason = note_text(json.loads(last.payload), ledger.views.notes(request_id))
    if not reason or reason == ERASED_NOTE:
        raise LetterError(f"request {request_id}: the {kind}'s reason was erased from the ledger's notes, "
                          "and a letter must state it: write to the person by hand")
    return reason, last.recorded_at


def letter_facts(ledger: Ledger, request_id: str, now: datetime, kind: LetterKind | None = None,
                 register: SystemsRegister | None = None, policy: RetentionPolicy | None = None,
                 recipients: bool = False, sender: str | None = None) -> LetterFacts:
    """The facts of the letter `kind` (by default, the one the request's state calls for)."""
    view = ledger.request(request_id, now)
    if view is None:
        raise LetterError(f"no request {request_id} in the ledger (yet): it may still be in the broker")
    kind = kind or default_kind(view)
    _check_kind(view, kind)
    holds = ledger.holds_of(request_id)
    scope = _scope_categories(ledger, request_id)
    entries = {s.system: _entry(register, s.system) for s in view.systems}
    places = tuple(_place(s, entries[s.system], scope) for s in view.systems)
    names = {p.system: p.name for p in places}
    kept = tuple(Kept(category=h.data_category, place=names.get(h.system, h.system),
                      legal_basis=h.legal_basis, citation=h.citation, retain_until=h.retain_until,
                      released_at=h.released_at)
                 for h in sorted(holds, key=lambda h: (h.retain_until, h.data_category)))
    reason, decided_at = _decision(ledger, request_id, kind)
    return LetterFacts(
        kind=kind, request_id=request_id, status=view.status, received_at=view.received_at,
        first_due_at=due_at(view.received_at), due_at=view.due_at, completed_at=view.completed_at,
        on_time=view.on_time, places=places, kept=kept,
        # A system the register no longer knows may have been a processor: listed rather than denied.
        recipients=tuple(p for p in places if p.kind != "internal") if recipients else None,
        extension_months=view.extension_months, reason=reason, decided_at=decided_at,
        category_words=dict(policy.categories) if policy else {}, sender=sender, written_at=now)


def _scope_categories(ledger: Ledger, request_id: str) -> set[str] | None:
    """The data categories the person limited the request to, if they did."""
    from pipeline.ledger import requests_table

    with ledger.engine.connect() as conn:
        scope = conn.execute(requests_table.select().with_only_columns(requests_table.c.scope).where(
            requests_table.c.request_id == request_id)).scalar()
    categories = json.loads(scope).get("data_categories") if scope else None
    return set(categories) if categories else None
