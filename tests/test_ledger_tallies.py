"""The figures read from tallies kept on write (migration 0008) are the figures counted from the rows:
on SQLite, PostgreSQL and MariaDB, through every kind of write (plans, outcomes, re-drives, officers'
retries and confirmations, a refusal, rows deleted), for a ledger upgraded from 0007, and the CSV
export, streamed a few rows at a time, lists every request newest first."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command

from pipeline.desk import exports
from pipeline.ledger import Ledger, events_table, open_ledger, requests_table, systems_table, upgrade
from pipeline.ledger.actions import confirm_manual, refuse, retry_system
from pipeline.ledger.migrations import config
from pipeline.ledger.views import LaneFigures, PipelineFigures
from schemas import ErasureOutcome, ErasurePlanned, PlannedTarget, SealedIdentities

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
SYSTEMS = ("brevo", "stripe", "paper-vendor")


@pytest.fixture(params=["sqlite", "postgres", "mariadb"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    return str(request.getfixturevalue(f"{request.param}_url"))


@pytest.fixture
def ledger(url: str) -> Iterator[Ledger]:
    ledger = open_ledger(url)
    try:
        yield ledger
    finally:
        ledger.close()


def counted(ledger: Ledger, now: datetime) -> PipelineFigures:
    """The figures counted from the rows themselves (what `figures` computed before the tallies)."""
    r, s, e = requests_table.c, systems_table.c, events_table.c
    with ledger.engine.connect() as conn:
        by_state = {status: int(n) for status, n in conn.execute(
            sa.select(r.status, sa.func.count()).group_by(r.status))}
        in_progress = [row for row in conn.execute(sa.select(r.received_at, r.due_at).where(
            r.status == "in_progress"))]
        rows = conn.execute(sa.select(s.system, s.status, s.final, s.expected_by, s.redrives)).all()
        retry_events = conn.execute(sa.select(e.system, e.kind, e.status)).all()
    lanes = []
    for system in sorted({row.system for row in rows}):
        mine = [row for row in rows if row.system == system]
        statuses: dict[str, int] = {}
        for row in mine:
            statuses[row.status] = statuses.get(row.status, 0) + 1
        still_open = [row for row in mine if not row.final]
        lanes.append(LaneFigures(system, statuses, len(still_open),
                                 sum(1 for row in still_open if row.expected_by < now)))
    retries: dict[tuple[str, str], int] = {}
    for system, kind, status in retry_events:
        reason = "officer" if kind == "officer_retry" else "processor" if (kind, status) == (
            "outcome", "retrying") else None
        if reason:
            retries[(system, reason)] = retries.get((system, reason), 0) + 1
    for lane in lanes:
        retries[(lane.system, "silent")] = sum(row.redrives for row in rows if row.system == lane.system)
        for reason in ("processor", "officer"):
            retries.setdefault((lane.system, reason), 0)
    return PipelineFigures(
        by_state, lanes, min((row.received_at for row in in_progress), default=None),
        min((row.due_at for row in in_progress), default=None),
        sum(1 for row in in_progress if row.due_at < now), ledger.chain_head()[0], retries,
        ledger.figures(now).outbox)


def plan(ledger: Ledger, received: datetime, systems: tuple[str, ...] = SYSTEMS) -> str:
    rid = str(uuid.uuid4())
    sealed = SealedIdentities(alg="secretbox-xsalsa20poly1305", key_id=rid, ciphertext="c2VjcmV0")
    ledger.record([ErasurePlanned(
        request_id=rid, received_at=received, due_at=received + timedelta(days=30),
        subject_ref=f"sr_{rid[:8]}", identities=sealed, planned_at=received,
        targets=[PlannedTarget(system=s, expected_turnaround_s=3600) for s in systems])], received)
    return rid


def answer(ledger: Ledger, rid: str, system: str, status: str, at: datetime, attempt: int = 1) -> None:
    ledger.record([ErasureOutcome(request_id=rid, system=system, attempt=attempt, status=status,  # type: ignore[arg-type]
                                  occurred_at=at)], at)


def assert_figures_exact(ledger: Ledger, now: datetime) -> None:
    assert ledger.figures(now) == counted(ledger, now)


def test_tallies_follow_every_kind_of_write(ledger: Ledger) -> None:
    assert_figures_exact(ledger, T0)
    done = plan(ledger, T0)
    for system in SYSTEMS:
        answer(ledger, done, system, "erased", T0 + timedelta(minutes=5))
    flaky = plan(ledger, T0 + timedelta(minutes=1))
    answer(ledger, flaky, "brevo", "retrying", T0 + timedelta(minutes=2))
    answer(ledger, flaky, "brevo", "retrying", T0 + timedelta(minutes=3), attempt=2)
    answer(ledger, flaky, "stripe", "failed", T0 + timedelta(minutes=3))
    answer(ledger, flaky, "paper-vendor", "manual", T0 + timedelta(minutes=3))
    silent = plan(ledger, T0 + timedelta(minutes=2), ("brevo", "stripe"))
    answer(ledger, silent, "stripe", "not_found", T0 + timedelta(minutes=4))
    assert_figures_exact(ledger, T0 + timedelta(minutes=10))
    # a silent system re-driven twice, an officer's retry of a failed one, a manual one confirmed
    assert ledger.redrive_silent(T0 + timedelta(hours=2))
    assert ledger.redrive_silent(T0 + timedelta(days=3))
    retry_system(ledger, flaky, "stripe", "officer-a", T0 + timedelta(days=3))
    confirm_manual(ledger, flaky, "paper-vendor", "erased", "officer-a", T0 + timedelta(days=3))
    answer(ledger, flaky, "stripe", "failed", T0 + timedelta(days=3, hours=1), attempt=2)
    answer(ledger, flaky, "brevo", "erased", T0 + timedelta(days=3, hours=1), attempt=3)
    refused = plan(ledger, T0 + timedelta(days=3), ("paper-vendor",))
    answer(ledger, refused, "paper-vendor", "manual", T0 + timedelta(days=3, minutes=1))
    refuse(ledger, refused, "manifestly unfounded", "officer-a", T0 + timedelta(days=3, minutes=2))
    for now in (T0 + timedelta(days=3, hours=2), T0 + timedelta(days=40)):
        figures = ledger.figures(now)
        assert_figures_exact(ledger, now)
    assert figures.requests_by_state == {"completed": 1, "needs_attention": 1, "in_progress": 1, "refused": 1}
    assert figures.retries[("brevo", "processor")] == 2 and figures.retries[("brevo", "silent")] >= 2
    assert figures.retries[("stripe", "officer")] == 1
    # rows deleted (a ledger pruned by hand): the tallies drop with them
    with ledger.engine.begin() as conn:
        conn.execute(systems_table.delete().where(systems_table.c.request_id == silent))
        conn.execute(requests_table.delete().where(requests_table.c.request_id == silent))
        conn.execute(events_table.delete().where(events_table.c.request_id == flaky,
                                                 events_table.c.kind == "officer_retry"))
    assert_figures_exact(ledger, T0 + timedelta(days=40))
    assert ledger.figures(T0).retries[("stripe", "officer")] == 0


def test_a_ledger_upgraded_from_0007_has_its_tallies_counted(url: str) -> None:
    upgrade(url)
    command.downgrade(config(url), "0007")
    old = Ledger(url)  # the code at head writes a 0007 ledger the same way, minus the tallies
    try:
        rid = plan(old, T0)
        answer(old, rid, "brevo", "retrying", T0 + timedelta(minutes=1))
        answer(old, rid, "stripe", "erased", T0 + timedelta(minutes=1))
        old.redrive_silent(T0 + timedelta(hours=3))
        plan(old, T0 + timedelta(minutes=5), ("stripe",))
    finally:
        old.close()
    ledger = open_ledger(url)  # to head: 0008 counts what is there
    try:
        now = T0 + timedelta(hours=4)
        assert_figures_exact(ledger, now)
        figures = ledger.figures(now)
        assert figures.requests_by_state == {"in_progress": 2}
        assert figures.retries[("brevo", "processor")] == 1 and figures.retries[("brevo", "silent")] >= 1
    finally:
        ledger.close()


def test_the_export_streams_every_request_newest_first(ledger: Ledger,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(exports, "EXPORT_CHUNK_ROWS", 3)  # several chunks, one not full
    ids = [plan(ledger, T0 + timedelta(minutes=i), ("brevo",)) for i in range(8)]
    answer(ledger, ids[0], "brevo", "erased", T0 + timedelta(hours=1))
    now = T0 + timedelta(days=25)
    chunks = list(exports.csv_rows(ledger.engine, now))
    assert len(chunks) >= 3, "written as it is read, not at once"
    rows = list(csv.DictReader(io.StringIO("".join(chunks))))
    assert [row["request_id"] for row in rows] == list(reversed(ids))
    assert rows[-1]["status"] == "completed" and rows[-1]["deadline_flag"] == ""
    assert {row["deadline_flag"] for row in rows[:-1]} == {"due_soon"}
    expected = ledger.list_requests(now, limit=100)
    assert [(row["request_id"], row["status"], row["received_at"], row["due_at"], row["on_time"])
            for row in rows] == [(v.request_id, v.status, v.received_at.isoformat(), v.due_at.isoformat(),
                                  "" if v.on_time is None else str(v.on_time)) for v in expected]
