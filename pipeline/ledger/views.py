"""What officers read: requests with their systems, the event log, legal holds."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from pipeline.deadlines import deadline_flag
from pipeline.ledger import listing
from pipeline.ledger.engine import create_ledger_engine
from pipeline.ledger.listing import Counted, PageCursor, RequestFilter
from pipeline.ledger.migrations import upgrade_engine
from pipeline.ledger.outbox import OutboxFigures, outbox_table
from pipeline.ledger.tables import (
    chain_head_table,
    events_table,
    holds_table,
    notes_table,
    requests_table,
    systems_table,
)
from pipeline.ledger.tallies import Tallies, read_tallies

ERASED_NOTE = "(text erased)"


def note_text(payload: Any, notes: dict[str, str]) -> str | None:
    """The free text an event refers to: by digest (kept apart, maybe erased since), or, for events
    recorded before texts left the chain, as the payload carries it."""
    if not isinstance(payload, dict):
        return None
    digest = payload.get("reason_sha256") or payload.get("note_sha256")
    if isinstance(digest, str):
        return notes.get(digest, ERASED_NOTE)
    legacy = payload.get("reason") or payload.get("note")
    return legacy if isinstance(legacy, str) else None


@dataclass(frozen=True)
class SystemView:
    system: str
    status: str
    attempt: int
    evidence: dict[str, Any] | None
    holds: list[dict[str, Any]]
    error: dict[str, Any] | None
    updated_at: datetime
    redrives: int = 0  # times the aggregator re-drove it while it was silent


@dataclass(frozen=True)
class RequestView:
    request_id: str
    subject_ref: str
    received_at: datetime
    due_at: datetime
    status: str
    completed_at: datetime | None
    on_time: bool | None
    deadline_flag: str | None
    systems: list[SystemView]
    channel: str | None = None
    verification: str | None = None
    extension_months: int = 0
    extension_reason: str | None = None


def request_view(row: sa.Row[Any], systems: Sequence[sa.Row[Any]], now: datetime) -> RequestView:
    return RequestView(
        request_id=row.request_id, subject_ref=row.subject_ref,
        received_at=row.received_at, due_at=row.due_at, status=row.status,
        completed_at=row.completed_at, on_time=row.on_time,
        deadline_flag=deadline_flag(row.due_at, now, row.status != "in_progress"),
        channel=row.channel, verification=row.verification,
        extension_months=row.extension_months or 0, extension_reason=row.extension_reason,
        systems=[SystemView(
            system=s.system, status=s.status, attempt=s.attempt,
            evidence=json.loads(s.evidence) if s.evidence else None,
            holds=json.loads(s.holds) if s.holds else [],
            error=json.loads(s.error) if s.error else None,
            updated_at=s.updated_at, redrives=s.redrives or 0,
        ) for s in systems],
    )


@dataclass(frozen=True)
class RequestPage:
    """A page of the request list: its requests, where the next page starts, how many match."""

    views: list[RequestView]
    next_cursor: PageCursor | None
    matching: Counted | None


class Views:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def request(self, request_id: str, now: datetime) -> RequestView | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(requests_table).where(
                requests_table.c.request_id == request_id)).first()
            if row is None:
                return None
            systems = conn.execute(sa.select(systems_table).where(
                systems_table.c.request_id == request_id).order_by(systems_table.c.system)).all()
        return request_view(row, systems, now)

    def list_requests(self, now: datetime, status: str | None = None, overdue: bool = False,
                      limit: int = 200, due_soon: bool = False, search: str | None = None,
                      channel: str | None = None, system: str | None = None,
                      ) -> list[RequestView]:
        """Requests, newest first (without their systems): the first page of `request_page`."""
        filters = RequestFilter(status=status, overdue=overdue, due_soon=due_soon, search=search,
                                channel=channel, system=system)
        return self.request_page(now, filters, limit=limit, count_cap=0).views

    def request_page(self, now: datetime, filters: RequestFilter, cursor: PageCursor | None = None,
                     limit: int = listing.DEFAULT_PAGE_SIZE, count_cap: int = listing.COUNT_CAP,
                     ) -> RequestPage:
        """One page of matching requests, newest first, starting after `cursor`; the cursor of the
        next page (None on the last); the number matching, counted up to `count_cap` (0: not)."""
        with self.engine.connect() as conn:
            rows = conn.execute(listing.page_query(filters, now, cursor, limit)).all()
            counted = listing.count(conn, filters, now, count_cap) if count_cap > 0 else None
        shown = rows[:limit]
        following = (PageCursor(shown[-1].received_at, shown[-1].request_id)
                     if len(rows) > limit else None)
        return RequestPage([request_view(row, [], now) for row in shown], following, counted)

    def events(self, request_id: str | None = None) -> list[sa.Row[Any]]:
        query = sa.select(events_table).order_by(events_table.c.position)
        if request_id:
            query = query.where(events_table.c.request_id == request_id)
        with self.engine.connect() as conn:
            return list(conn.execute(query).all())

    def notes(self, request_id: str) -> dict[str, str]:
        """The officers' texts of a request that still exist, by SHA-256."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(notes_table.c.sha256, notes_table.c.text).where(
                notes_table.c.request_id == request_id)).all()
        return {row.sha256: row.text for row in rows}

    def chain_head(self) -> tuple[int, str]:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(chain_head_table).where(chain_head_table.c.id == 1)).one()
        return int(row.last_position), str(row.last_hash)

    def active_holds(self, system: str | None = None) -> list[sa.Row[Any]]:
        query = (sa.select(holds_table).where(holds_table.c.released_at.is_(None))
                 .order_by(holds_table.c.system, holds_table.c.retain_until, holds_table.c.request_id))
        if system:
            query = query.where(holds_table.c.system == system)
        with self.engine.connect() as conn:
            return list(conn.execute(query).all())

    def figures(self, now: datetime) -> PipelineFigures:
        return pipeline_figures(self.engine, now)

    def ping(self) -> None:
        select_one(self.engine)

    def holds_of(self, request_id: str) -> list[sa.Row[Any]]:
        with self.engine.connect() as conn:
            return list(conn.execute(sa.select(holds_table).where(
                holds_table.c.request_id == request_id).order_by(
                holds_table.c.system, holds_table.c.data_category)).all())


def open_views(url: str) -> Views:
    """What officers read of the ledger at `url`, its schema first brought to head (as `open_ledger`
    does): for a command that only reads, without the writers' parts (state machine, key store,
    event contracts) and their imports."""
    engine = create_ledger_engine(url)
    upgrade_engine(engine)
    return Views(engine)


@dataclass(frozen=True)
class LaneFigures:
    """One system's rows: how many in each status, how many still open (not final), and how many of
    those are past the time the system was expected to answer by."""

    system: str
    by_status: dict[str, int]
    open: int
    overdue: int


@dataclass(frozen=True)
class PipelineFigures:
    """What an operator watches, from the tallies kept on write and indexed reads (no row is read into
    Python): requests by state, each lane, the oldest unfinished request and the nearest deadline,
    the chain's length."""

    requests_by_state: dict[str, int]
    lanes: list[LaneFigures]
    oldest_unfinished_received_at: datetime | None
    nearest_due_at: datetime | None
    overdue_requests: int
    chain_length: int
    # (system, reason) -> attempts started again: see `_retries`
    retries: dict[tuple[str, str], int] = field(default_factory=dict)
    outbox: OutboxFigures = field(default_factory=lambda: OutboxFigures(0, None, 0))


def _lanes(conn: sa.Connection, by_status: dict[str, dict[str, int]], now: datetime) -> list[LaneFigures]:
    """Each system with rows: its rows by status (tallied), its open and overdue rows (the open rows'
    own index: only rows not final are read)."""
    s = systems_table.c
    late = sa.case((s.expected_by < now, 1), else_=0)
    open_rows = {row.system: row for row in conn.execute(
        sa.select(s.system, sa.func.count().label("open"), sa.func.sum(late).label("overdue"))
        .where(s.final.is_(False)).group_by(s.system))}
    return [LaneFigures(system, statuses, int(open_rows[system].open) if system in open_rows else 0,
                        int(open_rows[system].overdue or 0) if system in open_rows else 0)
            for system, statuses in sorted(by_status.items())]


def _in_progress(conn: sa.Connection, now: datetime) -> tuple[datetime | None, datetime | None, int]:
    """The oldest request in progress, the nearest deadline of one, how many are past it: three
    queries, each answered from an index on (status, ...) (one query with the three aggregates would
    read every request in progress)."""
    r = requests_table.c
    in_progress = r.status == "in_progress"
    oldest = conn.execute(sa.select(sa.func.min(r.received_at)).where(in_progress)).scalar()
    nearest = conn.execute(sa.select(sa.func.min(r.due_at)).where(in_progress)).scalar()
    overdue = conn.execute(sa.select(sa.func.count()).select_from(requests_table)
                           .where(in_progress, r.due_at < now)).scalar_one()
    return oldest, nearest, int(overdue)


def pipeline_figures(engine: sa.Engine, now: datetime) -> PipelineFigures:
    """The figures from the tallies kept on write (`tallies`) and a few indexed reads: their cost
    does not grow with the ledger's history."""
    with engine.connect() as conn:
        tallies = read_tallies(conn)
        oldest, nearest, overdue = _in_progress(conn, now)
        lanes = _lanes(conn, tallies.systems_by_status, now)
        head = conn.execute(sa.select(chain_head_table.c.last_position)
                            .where(chain_head_table.c.id == 1)).scalar_one()
        outbox = _outbox(conn)
    return PipelineFigures(tallies.requests_by_state, lanes, oldest, nearest, overdue, int(head),
                           _retries(tallies), outbox)


RETRY_REASONS = ("processor", "silent", "officer")


def _retries(tallies: Tallies) -> dict[tuple[str, str], int]:
    """How many times each system's attempt was started again, by why: `processor` (it answered
    `retrying`: a transient failure, re-queued), `silent` (no answer past its turnaround: re-driven;
    each re-drive is counted on the row, the chain records only the first of a silence), `officer`
    (an officer's retry of a failed system). They only grow: the chain is append-only and the
    re-drive counts never go down. Every reason of every system with rows, zero included."""
    counts = {key: total for key, total in tallies.retries.items()
              if key[1] != "silent" or key[0] in tallies.systems_by_status}
    for system in tallies.systems_by_status:
        for reason in RETRY_REASONS:
            counts.setdefault((system, reason), 0)
    return counts


def _outbox(conn: sa.Connection) -> OutboxFigures:
    o = outbox_table.c
    row = conn.execute(sa.select(sa.func.count().label("pending"), sa.func.min(o.created_at).label("oldest"),
                                 sa.func.sum(sa.case((o.attempts > 1, 1), else_=0)).label("again"))).one()
    return OutboxFigures(int(row.pending), row.oldest, int(row.again or 0))


def select_one(engine: sa.Engine) -> None:
    """Raises unless the database answers a `SELECT 1`."""
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT 1")).scalar_one()
