"""The officer's overview: the figures the desk's home page charts, computed in SQL.

Every figure is an aggregate over a bounded window (the last 26 weeks' requests, the last 4 weeks'
answers, the open requests, the holds ending in the next 12 months), so the cost does not grow with
the ledger's history, and no request row is read into Python. The SQL is the same on SQLite,
PostgreSQL and MariaDB: time buckets are `CASE` ladders over bound instants (no dialect's date
functions), and the one duration is `seconds_between`, compiled per dialect. Percentiles are read
off a histogram (one GROUP BY over duration buckets 20% wide, no window function): the nearest
rank's bucket, reported as the largest answer in it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from dateutil.relativedelta import relativedelta
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from pipeline.ledger.tables import holds_table, requests_table, systems_table
from pipeline.ledger.views import LaneFigures, pipeline_figures

WEEKS = 26
# Completion times over the answers of the current week and the 3 before: what systems take now (on a
# million requests, a quarter of a million answers to read instead of two million).
COMPLETION_WEEKS = 4
HOLD_MONTHS = 12
RETENTION_CHANNEL = "retention"  # requests a retention sweep made, not a person
# Final statuses that answer the request; `failed` ends a system's row without completing it.
COMPLETED_STATUSES = ("erased", "not_found", "held")
# Open requests by days left before their deadline: overdue, then under 2, 7, 14, 31 days, then more.
DAYS_LEFT_EDGES = (0, 2, 7, 14, 31)
# Completion times are counted in buckets whose edges grow by `DURATION_STEP`, from a second to about
# two years (about 100 buckets): the percentiles are read off the buckets, to that resolution.
DURATION_STEP = 1.2
DURATION_EDGES_S = tuple(DURATION_STEP ** k
                         for k in range(round(math.log(2 * 366 * 86400, DURATION_STEP)) + 1))


class seconds_between(FunctionElement[float]):
    """SQL: the seconds from the first timestamp column to the second."""

    type = sa.Float()
    name = "seconds_between"
    inherit_cache = True


@compiles(seconds_between)
def _seconds_default(element: seconds_between, compiler: SQLCompiler, **kw: Any) -> str:
    raise NotImplementedError(f"seconds_between has no SQL for {compiler.dialect.name}")


@compiles(seconds_between, "sqlite")
def _seconds_sqlite(element: seconds_between, compiler: SQLCompiler, **kw: Any) -> str:
    start, end = (compiler.process(arg, **kw) for arg in element.clauses)
    # julianday's double holds about 40 microseconds of error today: rounded to the millisecond
    return f"ROUND((julianday({end}) - julianday({start})) * 86400.0, 3)"


@compiles(seconds_between, "postgresql")
def _seconds_postgresql(element: seconds_between, compiler: SQLCompiler, **kw: Any) -> str:
    start, end = (compiler.process(arg, **kw) for arg in element.clauses)
    return f"EXTRACT(EPOCH FROM ({end} - {start}))"


@compiles(seconds_between, "mysql")
@compiles(seconds_between, "mariadb")
def _seconds_mysql(element: seconds_between, compiler: SQLCompiler, **kw: Any) -> str:
    start, end = (compiler.process(arg, **kw) for arg in element.clauses)
    return f"(TIMESTAMPDIFF(MICROSECOND, {start}, {end}) / 1000000.0)"


@dataclass(frozen=True)
class WeeklyRequests:
    """Requests received in each week of the window (weeks start on Monday, 00:00 UTC), by the state
    each is in now; people's own requests apart from retention sweeps'."""

    week_starts: list[datetime]
    people: dict[str, list[int]]  # state -> one count per week
    sweeps: dict[str, list[int]]


@dataclass(frozen=True)
class CompletionTime:
    """How long a system took, from the request's plan to its answer (erased, not found or held), over
    the answers it gave in the window; percentiles to within `DURATION_STEP` (see completion_times)."""

    system: str
    answered: int
    median_s: float
    p95_s: float


@dataclass(frozen=True)
class DaysLeft:
    """Open requests whose deadline is `low_days` to `high_days` away (None: unbounded that side)."""

    low_days: int | None
    high_days: int | None
    requests: int


@dataclass(frozen=True)
class HoldsEnding:
    """Legal holds still in force whose end has passed (the release is due) or falls in each month."""

    ended: int
    month_starts: list[datetime]
    per_month: list[int]


@dataclass(frozen=True)
class Overview:
    now: datetime
    weekly: WeeklyRequests
    completion: list[CompletionTime]
    days_left: list[DaysLeft]
    holds: HoldsEnding
    lanes: list[LaneFigures]  # each system's rows by status, open and silent (as /metrics has them)


def week_start(moment: datetime) -> datetime:
    day = moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return day - timedelta(days=day.weekday())


def month_start(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def bucket(column: sa.ColumnElement[datetime], edges: Sequence[datetime]) -> sa.Case[int]:
    """SQL: 0 before `edges[0]`, i when `edges[i-1] <= column < edges[i]`, len(edges) after the last."""
    return sa.case(*((column < edge, index) for index, edge in enumerate(edges)), else_=len(edges))


def weekly_requests(conn: sa.Connection, now: datetime, weeks: int = WEEKS) -> WeeklyRequests:
    r = requests_table.c
    starts = [week_start(now) - timedelta(weeks=weeks - 1 - i) for i in range(weeks)]
    end = starts[-1] + timedelta(weeks=1)
    sweep = sa.case((r.channel == RETENTION_CHANNEL, 1), else_=0)
    # Grouped outside: PostgreSQL would not match a CASE of bound parameters in GROUP BY to its SELECT.
    rows = (sa.select(bucket(r.received_at, starts[1:]).label("week"), sweep.label("sweep"),
                      r.status.label("status"))
            .where(r.received_at >= starts[0], r.received_at < end).subquery())
    people: dict[str, list[int]] = {}
    sweeps: dict[str, list[int]] = {}
    for week, is_sweep, status, count in conn.execute(
            sa.select(rows.c.week, rows.c.sweep, rows.c.status, sa.func.count())
            .group_by(rows.c.week, rows.c.sweep, rows.c.status)):
        counts = (sweeps if is_sweep else people).setdefault(status, [0] * weeks)
        counts[int(week)] = int(count)
    return WeeklyRequests(starts, people, sweeps)


def duration_bucket(seconds: sa.ColumnElement[float], edges: Sequence[float]) -> sa.ColumnElement[int]:
    """SQL: the index of the first edge >= `seconds` (len(edges) above the last), by a binary search
    of nested `CASE`s: a handful of comparisons per row instead of one per edge."""
    def search(low: int, high: int) -> sa.ColumnElement[int]:
        if low == high:
            return sa.literal(low, sa.Integer)
        middle = (low + high) // 2
        return sa.case((seconds <= edges[middle], search(low, middle)), else_=search(middle + 1, high))
    return search(0, len(edges))


def nearest_rank(buckets: list[tuple[int, float]], percent: int) -> float:
    """The largest answer in the bucket holding rank ceil(n * percent / 100): (count, largest) per
    bucket, in ascending order."""
    n = sum(count for count, _ in buckets)
    seen = 0
    for count, largest in buckets:
        seen += count
        if seen * 100 >= n * percent:
            return largest
    raise ValueError("no answers")


def completion_times(conn: sa.Connection, since: datetime) -> list[CompletionTime]:
    """Each system's answers since `since` counted in buckets of `DURATION_EDGES_S` (one GROUP BY, no
    window function); the median and 95th percentile are the largest answer in the bucket holding the nearest
    rank: never below the exact nearest-rank value and at most `DURATION_STEP` times it (exact when
    the bucket holds one distinct duration; within a second below `DURATION_EDGES_S[0]`)."""
    s, r = systems_table.c, requests_table.c
    seconds = seconds_between(r.planned_at, s.updated_at)
    answers = (sa.select(s.system.label("system"), duration_bucket(seconds, DURATION_EDGES_S).label("bucket"),
                         seconds.label("seconds"))
               .select_from(systems_table.join(requests_table, s.request_id == r.request_id))
               .where(s.final.is_(True), s.status.in_(COMPLETED_STATUSES), s.updated_at >= since)
               .subquery())
    # Grouped outside, as in weekly_requests (PostgreSQL and bound parameters in GROUP BY).
    query = (sa.select(answers.c.system, answers.c.bucket, sa.func.count(), sa.func.max(answers.c.seconds))
             .group_by(answers.c.system, answers.c.bucket))
    if conn.dialect.name == "postgresql":
        # Compiling the bucket ladder's hundred comparisons to machine code took longer (a second at
        # a million requests) than running them; for this transaction only.
        conn.exec_driver_sql("SET LOCAL jit = off")
    histograms: dict[str, dict[int, tuple[int, float]]] = {}
    for system, index, count, largest in conn.execute(query):
        histograms.setdefault(system, {})[int(index)] = (int(count), float(largest))
    times = []
    for system in sorted(histograms):
        buckets = [histograms[system][index] for index in sorted(histograms[system])]
        times.append(CompletionTime(system, sum(count for count, _ in buckets),
                                    nearest_rank(buckets, 50), nearest_rank(buckets, 95)))
    return times


def days_left(conn: sa.Connection, now: datetime) -> list[DaysLeft]:
    r = requests_table.c
    edges = [now + timedelta(days=days) for days in DAYS_LEFT_EDGES]
    slots = sa.select(bucket(r.due_at, edges).label("slot")).where(r.status == "in_progress").subquery()
    counts = {int(slot): int(count) for slot, count in conn.execute(
        sa.select(slots.c.slot, sa.func.count()).group_by(slots.c.slot))}
    bounds = [None, *DAYS_LEFT_EDGES, None]
    return [DaysLeft(bounds[i], bounds[i + 1], counts.get(i, 0)) for i in range(len(bounds) - 1)]


def holds_ending(conn: sa.Connection, now: datetime, months: int = HOLD_MONTHS) -> HoldsEnding:
    h = holds_table.c
    starts = [month_start(now) + relativedelta(months=i) for i in range(months)]
    end = starts[-1] + relativedelta(months=1)
    # slot 0: ended already (release due); slot i: the month starts[i - 1], from now on
    edges = [now, *starts[1:]]
    slots = (sa.select(bucket(h.retain_until, edges).label("slot"))
             .where(h.released_at.is_(None), h.retain_until < end).subquery())
    counts = {int(slot): int(count) for slot, count in conn.execute(
        sa.select(slots.c.slot, sa.func.count()).group_by(slots.c.slot))}
    return HoldsEnding(counts.get(0, 0), starts, [counts.get(i + 1, 0) for i in range(months)])


def overview(engine: sa.Engine, now: datetime) -> Overview:
    """The overview at `now`: a handful of aggregate queries, read-only."""
    with engine.connect() as conn:
        weekly = weekly_requests(conn, now)
        completion = completion_times(conn, weekly.week_starts[-COMPLETION_WEEKS])
        left = days_left(conn, now)
        holds = holds_ending(conn, now)
    return Overview(now, weekly, completion, left, holds, pipeline_figures(engine, now).lanes)
