"""A processor silent for ten minutes: re-drives back off exponentially, stop before the deadline,
and the hash chain grows with state changes, not with the housekeeping timer's ticks."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner

from pipeline.keywrap import AesGcmKeyWrapper
from pipeline.ledger import Ledger, open_ledger
from pipeline.ledger.tables import systems_table
from schemas import ErasureOutcome, ErasurePlanned, PlannedTarget, SealedIdentities

T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
TURNAROUND_S = 60
TICK = timedelta(seconds=5)
OUTAGE = timedelta(minutes=10)
RID = "3c9e1f2a-7b4d-4e8f-a1c2-5d6e7f8a9b0c"
SHORT = "8f1e2d3c-4b5a-4968-8776-655443322110"  # a request due five minutes after it was received


@pytest.fixture
def ledger(sqlite_url: str) -> Iterator[Ledger]:
    instance = open_ledger(sqlite_url, AesGcmKeyWrapper.generate())
    yield instance
    instance.close()


def plan(rid: str, due: timedelta = timedelta(days=30)) -> ErasurePlanned:
    sealed = SealedIdentities(alg="secretbox-xsalsa20poly1305", key_id=rid, ciphertext="c2VjcmV0")
    return ErasurePlanned(
        request_id=rid, received_at=T0, due_at=T0 + due, subject_ref="sr_b", identities=sealed, planned_at=T0,
        targets=[PlannedTarget(system=s, expected_turnaround_s=TURNAROUND_S) for s in ("brevo", "site-db")])


def outcome(rid: str, system: str, attempt: int, when: datetime) -> ErasureOutcome:
    return ErasureOutcome(request_id=rid, system=system, attempt=attempt, status="erased", occurred_at=when)


def outage(ledger: Ledger, until: timedelta = OUTAGE) -> dict[str, list[tuple[timedelta, int]]]:
    """Housekeeping every 5 s of simulated time while brevo says nothing: when each re-drive went out."""
    sent: dict[str, list[tuple[timedelta, int]]] = {}
    now = T0
    while now <= T0 + until:
        for task in ledger.redrive_silent(now):
            sent.setdefault(task.request_id, []).append((now - T0, task.attempt))
        now += TICK
    return sent


def expected_by(ledger: Ledger, rid: str, system: str) -> datetime:
    with ledger.engine.connect() as conn:
        value = conn.execute(systems_table.select().where(
            systems_table.c.request_id == rid, systems_table.c.system == system)).one().expected_by
    assert isinstance(value, datetime)
    return value


def test_a_ten_minute_outage_adds_state_changes_to_the_chain_not_ticks(ledger: Ledger) -> None:
    ledger.record([plan(RID), outcome(RID, "site-db", 1, T0)], T0)
    chain_before = ledger.chain_head()[0]
    sent = outage(ledger)
    # 121 ticks; brevo re-driven after 1, then 2, then 4 turnarounds of silence (the next: after 8),
    # each on the first tick past its time.
    assert sent[RID] == [(timedelta(seconds=65), 2), (timedelta(seconds=190), 3), (timedelta(seconds=435), 4)]
    redriven = [e for e in ledger.events(RID) if e.kind == "redriven"]
    assert [(e.system, e.attempt) for e in redriven] == [("brevo", 2)], "one event: brevo went silent"
    assert ledger.chain_head()[0] == chain_before + 1
    assert expected_by(ledger, RID, "brevo") == T0 + timedelta(seconds=435 + 8 * TURNAROUND_S)

    view = ledger.request(RID, T0 + OUTAGE)
    assert view is not None
    assert {s.system: (s.attempt, s.redrives) for s in view.systems} == {"brevo": (4, 3), "site-db": (1, 0)}

    # The processor is back: the answer to the last re-drive completes the request.
    back = T0 + OUTAGE + TICK
    done = ledger.record([outcome(RID, "brevo", 4, back)], back)
    assert [c.status for c in done] == ["completed"]
    assert ledger.verify_chain() is None
    assert [e.kind for e in ledger.events(RID)] == ["planned", "outcome", "redriven", "outcome", "completed"]
    view = ledger.request(RID, back)
    assert view is not None and view.status == "completed"
    assert {s.system: s.redrives for s in view.systems}["brevo"] == 3, "officers still see the nudges"


def test_a_new_silence_after_an_answer_is_recorded_again(ledger: Ledger) -> None:
    ledger.record([plan(RID), outcome(RID, "site-db", 1, T0)], T0)
    outage(ledger, timedelta(seconds=200))  # re-drives 2 and 3
    accepted = ErasureOutcome(request_id=RID, system="brevo", attempt=3, status="pending",
                              occurred_at=T0 + timedelta(seconds=200))
    ledger.record([accepted], T0 + timedelta(seconds=200))
    tasks = ledger.redrive_silent(T0 + timedelta(seconds=261))
    assert [(t.system, t.attempt) for t in tasks] == [("brevo", 4)], "one turnaround after it spoke"
    assert [e.attempt for e in ledger.events(RID) if e.kind == "redriven"] == [2, 4], "a new silence"
    view = ledger.request(RID, T0 + timedelta(seconds=261))
    assert view is not None and {s.system: s.redrives for s in view.systems}["brevo"] == 3


def test_re_drives_stop_before_the_deadline(ledger: Ledger) -> None:
    ledger.record([plan(SHORT, due=timedelta(minutes=5)), outcome(SHORT, "site-db", 1, T0)], T0)
    sent = outage(ledger)
    due = T0 + timedelta(minutes=5)
    # After 1 and 2 turnarounds, then the 4 turnarounds would pass the deadline: the last re-drive
    # is pulled in to one turnaround before it, and none follows.
    assert [at for at, _attempt in sent[SHORT]] == [timedelta(seconds=65), timedelta(seconds=190),
                                                    timedelta(seconds=245)]
    assert all(T0 + at < due for at, _attempt in sent[SHORT])
    assert expected_by(ledger, SHORT, "brevo") <= due
    assert len([e for e in ledger.events(SHORT) if e.kind == "redriven"]) == 1
    late = due + timedelta(minutes=6)
    done = ledger.record([outcome(SHORT, "brevo", 4, late)], late)
    assert [(c.status, c.on_time) for c in done] == [("completed", False)]
    assert ledger.verify_chain() is None


def test_erasure_status_says_how_often_a_system_was_re_driven(ledger: Ledger,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.cli import officers

    ledger.record([plan(RID), outcome(RID, "site-db", 1, T0)], T0)
    outage(ledger)
    monkeypatch.setattr(officers.wiring, "ledger_views", lambda _settings: ledger.views)
    result = CliRunner().invoke(officers.status, [RID])
    assert result.exit_code == 0, result.output
    brevo = next(line for line in result.output.splitlines() if line.strip().startswith("brevo"))
    assert "attempt 4" in brevo and "re-driven 3 times" in brevo
    result = CliRunner().invoke(officers.status, [RID, "--json"])
    assert result.exit_code == 0, result.output
    assert '"redrives": 3' in result.output
