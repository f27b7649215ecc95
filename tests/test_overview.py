"""The officer's overview, computed by the ledger's SQL on SQLite, PostgreSQL and MariaDB: the counts an
officer reads off each chart, against a ledger seeded with known requests (tests/overview_seed.py)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from pipeline.ledger import Ledger, open_ledger
from pipeline.ledger.overview import Overview, overview
from tests.overview_seed import NOW, at, seed_overview

WEEKS = 26


def weeks(**counts: int) -> list[int]:
    """26 weekly counts, zero but for the weeks named `w<index>`."""
    series = [0] * WEEKS
    for name, count in counts.items():
        series[int(name[1:])] = count
    return series


@pytest.fixture(params=["sqlite_url", "postgres_url", "mariadb_url"])
def seeded(request: pytest.FixtureRequest) -> Iterator[tuple[Ledger, Overview]]:
    ledger = open_ledger(request.getfixturevalue(request.param))
    try:
        seed_overview(ledger)
        yield ledger, overview(ledger.engine, NOW)
    finally:
        ledger.close()


def test_requests_per_week_by_state_people_apart_from_sweeps(seeded: tuple[Ledger, Overview]) -> None:
    _, figures = seeded
    weekly = figures.weekly
    assert weekly.week_starts[0] == at("2026-05-25 00:00")
    assert weekly.week_starts == [weekly.week_starts[0] + timedelta(weeks=i) for i in range(WEEKS)]
    # B, received an hour before the window, is not counted; A and E, at a week's first instant, are
    assert weekly.people == {
        "completed": weeks(w0=1, w24=1),
        "completed_with_holds": weeks(w20=2),
        "needs_attention": weeks(w24=1),
        "in_progress": weeks(w18=1, w21=2, w25=2),
    }
    assert weekly.sweeps == {"completed": weeks(w24=2), "in_progress": weeks(w25=1)}


def test_time_to_completion_per_system_median_and_p95(seeded: tuple[Ledger, Overview]) -> None:
    _, figures = seeded
    times = {t.system: t for t in figures.completion}
    assert set(times) == {"brevo", "site-db"}
    # brevo answered after 10, 10, 30, 60, 90, 100, 300 s in the window (B's answer came before it;
    # F's failure is no answer): nearest rank 4 of 7 and 7 of 7
    assert (times["brevo"].answered, times["brevo"].median_s, times["brevo"].p95_s) == (7, 60, 300)
    # site-db: 20, 40, 120, 240, 600, 900, 1800, 7200 s (B's answer came inside the window)
    assert (times["site-db"].answered, times["site-db"].median_s, times["site-db"].p95_s) == (8, 240, 7200)


def test_open_requests_by_days_left(seeded: tuple[Ledger, Overview]) -> None:
    ledger, figures = seeded
    slots = [(d.low_days, d.high_days, d.requests) for d in figures.days_left]
    assert slots == [(None, 0, 1), (0, 2, 1), (2, 7, 1), (7, 14, 0), (14, 31, 3), (31, None, 0)]
    # the overdue slot is what the request list's overdue filter shows
    assert len(ledger.list_requests(NOW, overdue=True)) == 1


def test_holds_ending_per_month(seeded: tuple[Ledger, Overview]) -> None:
    _, figures = seeded
    holds = figures.holds
    assert holds.ended == 1  # D's card data: its end passed, the release is due
    assert (holds.month_starts[0], holds.month_starts[-1]) == (at("2026-11-01 00:00"), at("2027-10-01 00:00"))
    # November (30th, 23:00), December (1st, 00:00), February; the 2036 hold is beyond the window
    assert holds.per_month == [1, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]


def test_failing_and_silent_systems_are_the_metrics_lanes(seeded: tuple[Ledger, Overview]) -> None:
    ledger, figures = seeded
    lanes = {lane.system: lane for lane in figures.lanes}
    assert lanes["brevo"].by_status == {"erased": 6, "not_found": 2, "failed": 1, "retrying": 1, "planned": 4}
    assert (lanes["brevo"].open, lanes["brevo"].overdue) == (5, 4)  # J is not yet late
    assert lanes["site-db"].by_status.get("failed", 0) == 0
    assert (lanes["site-db"].open, lanes["site-db"].overdue) == (6, 5)
    assert figures.lanes == ledger.figures(NOW).lanes
