"""The ledger on SQLite and PostgreSQL: completion once, duplicates inert, re-drive, hash chain."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from pipeline.keywrap import AesGcmKeyWrapper
from pipeline.ledger import Ledger, events_table, open_ledger
from schemas import ErasureOutcome, ErasurePlanned, PlannedTarget, SealedIdentities

RID = "7d5e3c1a-4b2f-4c8d-9e6f-0a1b2c3d4e5f"
T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
SEALED = SealedIdentities(alg="secretbox-xsalsa20poly1305", key_id=RID, ciphertext="c2VjcmV0")


@pytest.fixture(params=["sqlite", "postgres"])
def ledger(request: pytest.FixtureRequest, tmp_path: object) -> Ledger:
    url = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url")
    instance = open_ledger(url, AesGcmKeyWrapper.generate())
    request.addfinalizer(instance.close)
    return instance


def plan(turnaround_s: float = 60) -> ErasurePlanned:
    return ErasurePlanned(
        request_id=RID, received_at=T0, due_at=T0 + timedelta(days=30), subject_ref="sr_x",
        identities=SEALED, planned_at=T0,
        targets=[PlannedTarget(system="brevo", expected_turnaround_s=turnaround_s),
                 PlannedTarget(system="site-db", expected_turnaround_s=turnaround_s)])


def outcome(system: str, status: str, attempt: int = 1) -> ErasureOutcome:
    return ErasureOutcome(request_id=RID, system=system, attempt=attempt, status=status,  # type: ignore[arg-type]
                          occurred_at=T0)


def test_completes_once_and_duplicates_change_nothing(ledger: Ledger) -> None:
    assert ledger.record([plan(), outcome("brevo", "erased")], T0) == []
    done = ledger.record([outcome("site-db", "not_found"), outcome("site-db", "not_found")], T0)
    assert [c.status for c in done] == ["completed"]
    events_before = len(ledger.events(RID))
    assert ledger.record([plan(), outcome("brevo", "erased"), outcome("brevo", "not_found", 2),
                          outcome("site-db", "erased", 3)], T0) == []
    assert len(ledger.events(RID)) == events_before
    view = ledger.request(RID, T0)
    assert view is not None and view.status == "completed" and view.on_time
    assert {s.system: s.status for s in view.systems} == {"brevo": "erased", "site-db": "not_found"}


def test_failed_system_needs_attention(ledger: Ledger) -> None:
    done = ledger.record([plan(), outcome("brevo", "failed"), outcome("site-db", "erased")], T0)
    assert [c.status for c in done] == ["needs_attention"]


def test_silent_system_is_redriven_with_next_attempt(ledger: Ledger) -> None:
    ledger.record([plan(turnaround_s=30), outcome("site-db", "erased")], T0)
    assert ledger.redrive_silent(T0 + timedelta(seconds=10)) == []
    tasks = ledger.redrive_silent(T0 + timedelta(seconds=31))
    assert [(t.system, t.attempt) for t in tasks] == [("brevo", 2)]
    assert tasks[0].identities == SEALED
    assert ledger.redrive_silent(T0 + timedelta(seconds=32)) == [], "not again before its turnaround"
    done = ledger.record([outcome("brevo", "erased", 2)], T0 + timedelta(seconds=40))
    assert [c.request_id for c in done] == [RID]


def test_retrying_defers_the_redrive_until_after_the_announced_attempt(ledger: Ledger) -> None:
    retry = ErasureOutcome(request_id=RID, system="brevo", attempt=1, status="retrying", occurred_at=T0,
                           next_attempt_at=T0 + timedelta(seconds=100))
    ledger.record([plan(turnaround_s=30), retry], T0)
    assert [t.system for t in ledger.redrive_silent(T0 + timedelta(seconds=60))] == ["site-db"]
    tasks = ledger.redrive_silent(T0 + timedelta(seconds=131))
    # site-db again (silent since its first re-drive); brevo once its announced retry is overdue.
    assert {t.system: t.attempt for t in tasks} == {"site-db": 3, "brevo": 3}


def test_unpublished_completion_is_found_again(ledger: Ledger) -> None:
    ledger.record([plan(), outcome("brevo", "erased"), outcome("site-db", "erased")], T0)
    assert [c.request_id for c in ledger.unpublished_completions()] == [RID]
    ledger.mark_completion_published([RID])
    assert ledger.unpublished_completions() == []


def test_chain_verifies_and_names_a_deleted_row(ledger: Ledger) -> None:
    ledger.record([plan(), outcome("brevo", "erased"), outcome("site-db", "erased")], T0)
    target = ledger.events(RID)[2]
    with ledger.engine.begin() as conn:
        conn.execute(sa.delete(events_table).where(events_table.c.id == target.id))
    assert ledger.verify_chain() == target.position


def test_chain_verifies_and_names_an_edited_row(ledger: Ledger) -> None:
    ledger.record([plan(), outcome("brevo", "erased"), outcome("site-db", "erased")], T0)
    assert ledger.verify_chain() is None
    target = ledger.events(RID)[1]
    with ledger.engine.begin() as conn:
        conn.execute(sa.update(events_table).where(events_table.c.id == target.id)
                     .values(status="not_found"))
    assert ledger.verify_chain() == target.position


def test_key_store_keeps_the_first_key(ledger: Ledger) -> None:
    first = ledger.grant_data_keys({RID: b"a" * 32}, T0)
    second = ledger.grant_data_keys({RID: b"b" * 32}, T0)
    assert first[RID].data_key == second[RID].data_key == b"a" * 32
    assert not second[RID].tasks_published
    ledger.mark_tasks_published([RID], T0)
    assert ledger.grant_data_keys({RID: b"c" * 32}, T0)[RID].tasks_published
    assert ledger.data_key(RID) == b"a" * 32


def test_data_key_destroyed_after_the_grace_period_only_when_completed(ledger: Ledger) -> None:
    ledger.grant_data_keys({RID: b"k" * 32}, T0)
    ledger.record([plan(), outcome("brevo", "erased")], T0)
    assert ledger.destroy_data_keys(T0 + timedelta(days=90), grace_s=86400) == 0, "not finished"
    ledger.record([outcome("site-db", "erased")], T0)
    assert ledger.destroy_data_keys(T0 + timedelta(hours=1), grace_s=86400) == 0, "within grace"
    assert ledger.destroy_data_keys(T0 + timedelta(days=2), grace_s=86400) == 1
    assert ledger.data_key(RID) is None
    assert ledger.events(RID)[-1].kind == "data_key_destroyed"
    assert ledger.verify_chain() is None
    assert ledger.destroy_data_keys(T0 + timedelta(days=3), grace_s=86400) == 0
    # A destroyed key is never re-created: the router sees the request as already handled.
    assert RID not in ledger.grant_data_keys({RID: b"n" * 32}, T0)


def held(system: str, until: datetime, category: str = "invoices") -> ErasureOutcome:
    from schemas import Hold

    return ErasureOutcome(request_id=RID, system=system, attempt=1, status="held", occurred_at=T0,
                          holds=[Hold(data_category=category, legal_basis="GDPR Art. 17(3)(b)",
                                      citation="Code de commerce, art. L123-22", retain_until=until)])


def release(system: str, attempt: int, status: str = "erased") -> ErasureOutcome:
    return ErasureOutcome(request_id=RID, system=system, attempt=attempt, status=status,  # type: ignore[arg-type]
                          purpose="release", occurred_at=T0)


def test_hold_ends_in_a_release_task_then_a_recorded_release(ledger: Ledger) -> None:
    until = T0 + timedelta(days=400)
    done = ledger.record([plan(), held("site-db", until), outcome("brevo", "erased")], T0)
    assert [c.status for c in done] == ["completed_with_holds"]
    assert [(h.system, h.data_category) for h in ledger.active_holds()] == [("site-db", "invoices")]
    assert ledger.request_releases(until - timedelta(seconds=1)) == []
    tasks = ledger.request_releases(until + timedelta(seconds=1))
    assert [(t.system, t.purpose, t.release_categories, t.attempt) for t in tasks] == [
        ("site-db", "release", ["invoices"], 2)]
    assert ledger.request_releases(until + timedelta(seconds=2)) == [], "asked once"
    ledger.record([release("site-db", 2)], until + timedelta(seconds=3))
    assert ledger.active_holds() == []
    kinds = [(e.kind, e.system) for e in ledger.events(RID)]
    assert ("release_requested", "site-db") in kinds and ("released", "site-db") in kinds
    view = ledger.request(RID, until)
    assert view is not None and view.status == "completed_with_holds"
    assert ledger.holds_of(RID)[0].released_at is not None
    assert ledger.verify_chain() is None


def test_lost_release_is_asked_again_later(ledger: Ledger) -> None:
    until = T0 + timedelta(days=1)
    ledger.record([plan(), held("site-db", until), outcome("brevo", "erased")], T0)
    assert len(ledger.request_releases(until + timedelta(minutes=1))) == 1
    assert ledger.request_releases(until + timedelta(minutes=30)) == []
    again = ledger.request_releases(until + timedelta(hours=2))
    assert [(t.system, t.attempt) for t in again] == [("site-db", 3)]


def test_failed_release_keeps_the_hold_active(ledger: Ledger) -> None:
    until = T0 + timedelta(days=1)
    ledger.record([plan(), held("site-db", until), outcome("brevo", "erased")], T0)
    ledger.request_releases(until + timedelta(minutes=1))
    ledger.record([release("site-db", 2, status="failed")], until + timedelta(minutes=2))
    assert [h.data_category for h in ledger.active_holds()] == ["invoices"]


def test_key_of_a_request_with_holds_outlives_them(ledger: Ledger) -> None:
    until = T0 + timedelta(days=1)
    ledger.grant_data_keys({RID: b"k" * 32}, T0)
    ledger.record([plan(), held("site-db", until), outcome("brevo", "erased")], T0)
    assert ledger.destroy_data_keys(T0 + timedelta(days=30), grace_s=60) == 0, "hold still active"
    ledger.request_releases(until)
    ledger.record([release("site-db", 2)], until)
    assert ledger.destroy_data_keys(until + timedelta(seconds=30), grace_s=60) == 0, "within grace"
    assert ledger.destroy_data_keys(until + timedelta(seconds=61), grace_s=60) == 1


def test_concurrent_writers_keep_one_chain(ledger: Ledger) -> None:
    """The aggregator's batches, its timer and the desk write at once: the chain never forks."""
    import threading
    import uuid as uuid_module

    errors: list[BaseException] = []

    def writer() -> None:
        try:
            for _ in range(8):
                rid = str(uuid_module.uuid4())
                planned = plan().model_copy(update={"request_id": rid})
                erased = outcome("brevo", "erased").model_copy(update={"request_id": rid})
                ledger.record([planned, erased], T0)
                ledger.redrive_silent(T0 + timedelta(hours=1))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    assert ledger.verify_chain() is None
    positions = [e.position for e in ledger.events()]
    assert positions == list(range(1, len(positions) + 1))
