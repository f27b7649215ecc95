"""A ledger seeded for the officer's overview at a fixed instant (Wednesday 18 November 2026, noon UTC):
people's requests and retention sweeps over 26 weeks, each system's answer at a known delay, open
requests at known distances from their deadline, holds ending in known months.

The figures `overview(engine, NOW)` must give are spelled out in tests/test_overview.py."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from pipeline.deadlines import due_at
from pipeline.ledger import Ledger
from schemas import ErasureOutcome, ErasurePlanned, Hold, PlannedTarget, SealedIdentities

NOW = datetime(2026, 11, 18, 12, 0, tzinfo=UTC)
SYSTEMS = ("brevo", "site-db")
TURNAROUND_S = 3600.0
# (status, seconds after the plan) per system
Answers = dict[str, tuple[str, float]]


def hold(category: str, until: datetime) -> Hold:
    return Hold(data_category=category, legal_basis="GDPR Art. 17(3)(b): legal obligation",
                citation="Code de commerce, art. L123-22", retain_until=until)


def seed_request(ledger: Ledger, received: datetime, answers: Answers | None = None,
                 channel: str = "contact_form", holds: list[Hold] | None = None) -> str:
    """A request planned when received, each system answering at its delay (held: with `holds`)."""
    rid = str(uuid.uuid4())
    sealed = SealedIdentities(alg="secretbox-xsalsa20poly1305", key_id=rid, ciphertext="c2VjcmV0")
    ledger.record([ErasurePlanned(
        request_id=rid, received_at=received, due_at=due_at(received), subject_ref=f"sr_{rid[:8]}",
        identities=sealed, channel=channel, verification="email_confirmation", planned_at=received,
        targets=[PlannedTarget(system=s, expected_turnaround_s=TURNAROUND_S) for s in SYSTEMS])], received)
    for system, (status, after_s) in sorted((answers or {}).items(), key=lambda item: item[1][1]):
        at = received + timedelta(seconds=after_s)
        ledger.record([ErasureOutcome(  # type: ignore[arg-type]
            request_id=rid, system=system, attempt=1, status=status, occurred_at=at,
            holds=(holds or []) if status == "held" else [])], at)
    return rid


def at(day: str) -> datetime:
    return datetime.fromisoformat(day).replace(tzinfo=UTC)


def seed_overview(ledger: Ledger) -> dict[str, str]:
    """The requests by letter (see the module's docstring)."""

    def seed(day: str, answers: Answers | None = None, **extra: Any) -> str:
        return seed_request(ledger, at(day), answers, **extra)

    ids = {
        # week 0 of the window (Monday 25 May 2026), at its very first instant
        "A": seed("2026-05-25 00:00", {"brevo": ("erased", 60), "site-db": ("erased", 120)}),
        # before the window: brevo answered before it too, site-db after it began (counted)
        "B": seed("2026-05-24 23:00", {"brevo": ("erased", 1800), "site-db": ("erased", 7200)}),
        # week 18, still in progress and overdue (due 1 November)
        "L": seed("2026-10-01 10:00", {"brevo": ("retrying", 60)}),
        # week 20: two kept data under holds ending in November, December, February, 2036; and one ended
        "C": seed("2026-10-13 10:00", {"brevo": ("erased", 300), "site-db": ("held", 600)},
                  holds=[hold("card_data", at("2026-11-30 23:00")),
                         hold("dispute_evidence", at("2026-12-01 00:00")),
                         hold("invoices", at("2027-02-10 00:00")),
                         hold("accounting", at("2036-01-01 00:00"))]),
        "D": seed("2026-10-14 10:00", {"brevo": ("not_found", 30), "site-db": ("held", 900)},
                  holds=[hold("card_data", at("2026-11-01 00:00"))]),
        # week 21, in progress: due in about 1 and 5 days
        "M": seed("2026-10-19 13:00"),
        "N": seed("2026-10-23 12:00"),
        # week 24: people's (one completed at the week's first instant, one with brevo failed), two sweeps
        "E": seed("2026-11-09 00:00", {"brevo": ("erased", 90), "site-db": ("erased", 1800)}),
        "F": seed("2026-11-12 08:00", {"brevo": ("failed", 45), "site-db": ("erased", 240)}),
        "G": seed("2026-11-10 02:00", {"brevo": ("erased", 10), "site-db": ("erased", 20)},
                  channel="retention"),
        "H": seed("2026-11-11 02:00", {"brevo": ("not_found", 10), "site-db": ("erased", 40)},
                  channel="retention"),
        # week 25 (the current one): two people's in progress, one sweep with site-db retrying
        "I": seed("2026-11-16 09:00", {"brevo": ("erased", 100)}),
        "J": seed("2026-11-18 11:30"),
        "K": seed("2026-11-17 02:00", {"site-db": ("retrying", 5)}, channel="retention"),
    }
    assert ledger.request(ids["C"], NOW).status == "completed_with_holds"  # type: ignore[union-attr]
    assert ledger.request(ids["F"], NOW).status == "needs_attention"  # type: ignore[union-attr]
    return ids
