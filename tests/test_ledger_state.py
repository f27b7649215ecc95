"""The request state machine on its own: no database, no broker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pipeline.ledger import GENESIS_HASH, RequestStateMachine
from pipeline.ledger.chain import ChainWriter, first_broken_link
from schemas import ErasureOutcome, ErasurePlanned, Hold, PlannedTarget, SealedIdentities

RID = "7d5e3c1a-4b2f-4c8d-9e6f-0a1b2c3d4e5f"
T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
SEALED = SealedIdentities(alg="secretbox-xsalsa20poly1305", key_id=RID, ciphertext="c2VjcmV0")


def machine(known_keys: set[str] | None = None, now: datetime = T0) -> RequestStateMachine:
    return RequestStateMachine({}, {}, ChainWriter(GENESIS_HASH, 0, known_keys or set()), now)


def plan() -> ErasurePlanned:
    return ErasurePlanned(
        request_id=RID, received_at=T0, due_at=T0 + timedelta(days=30), subject_ref="sr_x",
        identities=SEALED, planned_at=T0,
        targets=[PlannedTarget(system="brevo", expected_turnaround_s=60),
                 PlannedTarget(system="site-db", expected_turnaround_s=60)])


def outcome(system: str, status: str, attempt: int = 1, **extra: object) -> ErasureOutcome:
    return ErasureOutcome(request_id=RID, system=system, attempt=attempt, status=status,  # type: ignore[arg-type]
                          occurred_at=T0, **extra)  # type: ignore[arg-type]


def planned() -> RequestStateMachine:
    states = machine()
    states.apply(plan())
    return states


def kinds(states: RequestStateMachine) -> list[tuple[str, str | None, str | None]]:
    return [(row["kind"], row["system"], row["status"]) for row in states.chain.rows]


def test_plan_creates_the_request_and_one_row_per_system() -> None:
    states = planned()
    assert states.status(RID) == "in_progress"
    assert {s: r["status"] for s, r in states.systems[RID].items()} == {
        "brevo": "planned", "site-db": "planned"}
    assert states.systems[RID]["brevo"]["expected_by"] == T0 + timedelta(seconds=60)
    assert kinds(states) == [("planned", None, "in_progress")]
    assert states.complete_touched() == [], "systems still open"


def test_every_system_final_completes_once() -> None:
    states = planned()
    states.apply(outcome("brevo", "erased"))
    assert states.complete_touched() == []
    states.apply(outcome("site-db", "not_found"))
    [done] = states.complete_touched()
    assert (done.status, done.on_time, done.completed_at) == ("completed", True, T0)
    assert [(s.system, s.status) for s in done.systems] == [("brevo", "erased"), ("site-db", "not_found")]
    assert states.complete_touched() == [], "a completed request does not complete again"
    assert [n["notification_id"] for n in states.notifications] == [f"{RID}:completed"]
    assert kinds(states)[-1] == ("completed", None, "completed")
    assert first_broken_link(states.chain.rows) is None


def test_a_hold_completes_with_holds_and_records_them() -> None:
    until = T0 + timedelta(days=400)
    states = planned()
    states.apply(outcome("brevo", "erased"))
    states.apply(outcome("site-db", "held", holds=[Hold(
        data_category="invoices", legal_basis="GDPR Art. 17(3)(b)", citation="L123-22", retain_until=until)]))
    assert [c.status for c in states.complete_touched()] == ["completed_with_holds"]
    assert [(h["system"], h["data_category"], h["retain_until"]) for h in states.new_holds] == [
        ("site-db", "invoices", until)]


def test_a_failed_system_needs_attention_even_late() -> None:
    states = machine(now=T0 + timedelta(days=31))
    states.apply(plan())
    states.apply(outcome("brevo", "failed"))
    states.apply(outcome("site-db", "erased"))
    [done] = states.complete_touched()
    assert (done.status, done.on_time) == ("needs_attention", False)


def test_a_duplicate_outcome_changes_nothing() -> None:
    states = planned()
    states.apply(outcome("brevo", "erased"))
    rows_before = len(states.chain.rows)
    brevo = dict(states.systems[RID]["brevo"])
    states.apply(outcome("brevo", "erased"))
    states.apply(outcome("brevo", "not_found", attempt=2))
    assert len(states.chain.rows) == rows_before
    assert states.systems[RID]["brevo"] == brevo


def test_an_outcome_already_recorded_changes_nothing() -> None:
    """Replayed after a crash: the chain knows its dedupe key from the database."""
    states = machine(known_keys={f"{RID}:brevo:1:retrying"})
    states.apply(plan())
    states.apply(outcome("brevo", "retrying"))
    assert states.systems[RID]["brevo"]["status"] == "planned"
    assert states.dirty_systems == set()


def test_an_interim_report_of_a_superseded_attempt_is_ignored() -> None:
    states = planned()
    states.systems[RID]["brevo"]["attempt"] = 2  # re-driven: attempt 2 is in flight
    states.apply(outcome("brevo", "retrying", attempt=1))
    assert states.systems[RID]["brevo"]["status"] == "planned"
    assert kinds(states) == [("planned", None, "in_progress")]
    states.apply(outcome("brevo", "erased", attempt=1))
    assert states.systems[RID]["brevo"]["status"] == "erased", "a final report counts, whichever attempt"
    assert states.systems[RID]["brevo"]["attempt"] == 2


def test_retrying_moves_to_the_next_attempt_after_the_announced_time() -> None:
    states = planned()
    states.apply(outcome("brevo", "retrying", next_attempt_at=T0 + timedelta(seconds=100)))
    row = states.systems[RID]["brevo"]
    assert (row["status"], row["attempt"], row["final"]) == ("retrying", 2, False)
    assert row["expected_by"] == T0 + timedelta(seconds=160)


def test_a_release_outcome_ends_the_hold_without_touching_the_request() -> None:
    states = planned()
    states.apply(outcome("site-db", "erased", attempt=2, purpose="release"))
    states.apply(outcome("brevo", "failed", attempt=2, purpose="release"))
    states.apply(outcome("crm", "erased", attempt=2, purpose="release"))
    assert states.released == [(RID, "site-db")]
    assert kinds(states)[1:] == [("released", "site-db", "erased"), ("release_outcome", "brevo", "failed")]
    assert states.systems[RID]["site-db"]["status"] == "planned"
    assert states.status(RID) == "in_progress"
