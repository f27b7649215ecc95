"""The officer's overview, computed by the ledger's SQL on SQLite, PostgreSQL and MariaDB: the counts an
officer reads off each chart, against a ledger seeded with known requests (tests/overview_seed.py)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from pipeline.ledger import Ledger, open_ledger
from pipeline.ledger.overview import DURATION_EDGES_S, Overview, completion_times, nearest_rank, overview
from tests.overview_seed import NOW, at, seed_overview, seed_request

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
    ledger, figures = seeded
    with ledger.engine.connect() as conn:
        times = {t.system: t for t in completion_times(conn, figures.weekly.week_starts[0])}
    assert set(times) == {"brevo", "site-db"}
    # over the 26 weeks, brevo answered after 10, 10, 30, 60, 90, 100, 300 s (B's answer came before
    # them; F's failure is no answer): nearest rank 4 of 7 and 7 of 7 (each alone in its bucket: exact)
    assert (times["brevo"].answered, times["brevo"].median_s, times["brevo"].p95_s) == (7, 60, 300)
    # site-db: 20, 40, 120, 240, 600, 900, 1800, 7200 s (B's answer came inside the window)
    assert (times["site-db"].answered, times["site-db"].median_s, times["site-db"].p95_s) == (8, 240, 7200)


def test_the_overview_times_the_answers_of_the_last_4_weeks(seeded: tuple[Ledger, Overview]) -> None:
    _, figures = seeded
    times = {t.system: t for t in figures.completion}
    # from Monday 26 October: brevo 10, 10, 90, 100 s (E, G, H, I); site-db 20, 40, 240, 1800 s (E to H)
    assert (times["brevo"].answered, times["brevo"].median_s, times["brevo"].p95_s) == (4, 10, 100)
    assert (times["site-db"].answered, times["site-db"].median_s, times["site-db"].p95_s) == (4, 40, 1800)


@pytest.mark.parametrize("url", ["sqlite_url", "postgres_url", "mariadb_url"])
def test_percentiles_are_the_longest_answer_of_their_bucket(url: str, request: pytest.FixtureRequest) -> None:
    ledger = open_ledger(request.getfixturevalue(url))
    try:
        # 100 and 110 s share the bucket (95.4, 114.5] s; 200 s is alone in its own
        for received, after_s in (("2026-11-16 09:00", 100), ("2026-11-16 10:00", 110),
                                  ("2026-11-16 11:00", 200)):
            seed_request(ledger, at(received), {"brevo": ("erased", after_s)})
        with ledger.engine.connect() as conn:
            [brevo] = completion_times(conn, at("2026-11-16 00:00"))
    finally:
        ledger.close()
    # nearest rank 2 of 3 is 110 s, reported as is; rank 3 is 200 s
    assert (brevo.answered, brevo.median_s, brevo.p95_s) == (3, 110, 200)
    assert duration_bucket_of(100) == duration_bucket_of(110) != duration_bucket_of(200)


def duration_bucket_of(seconds: float) -> int:
    return next(i for i, edge in enumerate(DURATION_EDGES_S) if seconds <= edge)


def test_nearest_rank_over_buckets() -> None:
    buckets = [(3, 10.0), (1, 20.0), (6, 90.0)]  # (answers, longest) in ascending buckets: 10 answers
    assert nearest_rank(buckets, 30) == 10.0 and nearest_rank(buckets, 31) == 20.0
    assert nearest_rank(buckets, 50) == 90.0 and nearest_rank(buckets, 100) == 90.0
    assert nearest_rank([(1, 5.0)], 95) == 5.0


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
