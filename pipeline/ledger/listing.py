"""The request list at a million requests: filters, keyset pages, and counts that stop early.

Requests come newest first, ordered by `(received_at, request_id)`; a page ends with a cursor
(the last row's pair), and the next page starts strictly after it, so every page costs the same
whatever its depth and no request is shown twice or skipped while new ones arrive. Each filter
has an index whose first columns are the filter's and whose last are the order (migration 0007).
The number of matching requests is counted up to a cap, never by reading every row.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from pipeline.deadlines import DUE_SOON_WINDOW
from pipeline.ledger.tables import requests_table, systems_table

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
COUNT_CAP = 1_000  # a count past it would read more index entries than a page is worth
# What a request id's first characters can be: a UUID is lowercase hex and dashes.
_REQUEST_ID_PREFIX = re.compile(r"[0-9a-f-]{1,36}")
_CURSOR = re.compile(r"(-?\d{1,20})\.([0-9A-Za-z-]{1,36})")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

# The channel filter's two sides: requests `erasure sweep` submitted, and everyone else's.
SWEEP_CHANNEL = "retention"
PEOPLE_CHANNELS = "people"


class BadCursor(ValueError):
    """A page token that this ledger did not hand out (edited, or truncated when copied)."""


@dataclass(frozen=True)
class RequestFilter:
    """What the desk's list and `erasure list` filter on; every field optional."""

    status: str | None = None
    overdue: bool = False
    due_soon: bool = False
    search: str | None = None  # a request id or its first characters, or a subject reference
    channel: str | None = None
    system: str | None = None  # requests that include this system


@dataclass(frozen=True)
class PageCursor:
    """Where a page ended: the last request's `received_at` and id. Its token goes in the URL."""

    received_at: datetime
    request_id: str

    def token(self) -> str:
        moment = self.received_at if self.received_at.tzinfo else self.received_at.replace(tzinfo=UTC)
        return f"{(moment - _EPOCH) // _MICROSECOND}.{self.request_id}"

    @classmethod
    def parse(cls, token: str) -> PageCursor:
        match = _CURSOR.fullmatch(token.strip())
        if match is None:
            raise BadCursor("this page link is damaged (expected <microseconds>.<request id>): "
                            "go back to the first page")
        try:
            moment = _EPOCH + int(match.group(1)) * _MICROSECOND
        except OverflowError:
            raise BadCursor("this page link is damaged (its date is out of range): "
                            "go back to the first page") from None
        return cls(moment, match.group(2))


@dataclass(frozen=True)
class Counted:
    """How many requests match, counted up to `cap`: `capped` means more than `cap`."""

    count: int
    capped: bool
    cap: int


def _search(text: str) -> sa.ColumnElement[bool]:
    r = requests_table.c
    wanted = text.strip()
    prefix = wanted.lower()
    if _REQUEST_ID_PREFIX.fullmatch(prefix):
        # A range the primary key answers on every database and collation ('g' follows every hex
        # digit and the dash), then LIKE for the exact prefix: PostgreSQL uses no index for a LIKE
        # outside the C collation.
        return sa.and_(r.request_id >= prefix, r.request_id < prefix + "g",
                       r.request_id.startswith(prefix, autoescape=True))
    return r.subject_ref == wanted


def where(query: sa.Select[Any], filters: RequestFilter, now: datetime) -> sa.Select[Any]:
    """`query` over the requests table restricted to what `filters` asks."""
    r = requests_table.c
    if filters.status:
        query = query.where(r.status == filters.status)
    if filters.overdue:
        query = query.where(r.status == "in_progress", r.due_at < now)
    if filters.due_soon:
        query = query.where(r.status == "in_progress", r.due_at >= now, r.due_at <= now + DUE_SOON_WINDOW)
    if filters.channel == PEOPLE_CHANNELS:  # people's own requests: every channel but sweeps'
        query = query.where(sa.or_(r.channel.is_(None), r.channel != SWEEP_CHANNEL))
    elif filters.channel:
        query = query.where(r.channel == filters.channel)
    if filters.system:
        s = systems_table.c
        query = query.where(sa.exists().where(s.request_id == r.request_id, s.system == filters.system))
    if filters.search and filters.search.strip():
        query = query.where(_search(filters.search))
    return query


def after(query: sa.Select[Any], cursor: PageCursor | None) -> sa.Select[Any]:
    """The rows strictly after `cursor` in the list's order (newest first).

    Spelled so that every database reads it as a range on `received_at` (the index's order) with
    the tie on the same instant settled by the request id: a row-value comparison would be
    clearer, but MariaDB does not use an index for it.
    """
    if cursor is None:
        return query
    r = requests_table.c
    return query.where(r.received_at <= cursor.received_at,
                       sa.or_(r.received_at < cursor.received_at, r.request_id < cursor.request_id))


def newest_first(query: sa.Select[Any]) -> sa.Select[Any]:
    return query.order_by(requests_table.c.received_at.desc(), requests_table.c.request_id.desc())


def page_query(filters: RequestFilter, now: datetime, cursor: PageCursor | None,
               limit: int) -> sa.Select[Any]:
    """One page of requests and one more row, which tells whether another page follows."""
    query = after(where(sa.select(requests_table), filters, now), cursor)
    return newest_first(query).limit(limit + 1)


def count(conn: sa.Connection, filters: RequestFilter, now: datetime, cap: int = COUNT_CAP) -> Counted:
    """How many requests match, reading at most `cap + 1` index entries."""
    matching = where(sa.select(requests_table.c.request_id), filters, now).limit(cap + 1).subquery()
    found = int(conn.execute(sa.select(sa.func.count()).select_from(matching)).scalar_one())
    return Counted(min(found, cap), found > cap, cap)


def clamp_page_size(limit: int) -> int:
    return max(1, min(limit, MAX_PAGE_SIZE))
