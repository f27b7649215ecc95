"""The request list a page at a time: every request exactly once, in order, whatever the filter.

A ledger seeded by the scale benchmark's seeder (every state, channel and system mix), plus
requests received at the same instant (ties across a page boundary), on SQLite, PostgreSQL and
MariaDB; the pages are compared with what the rows say, filtered in Python.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from bench.seed_ledger import seed
from pipeline.deadlines import DUE_SOON_WINDOW
from pipeline.ledger import Ledger, requests_table, systems_table
from pipeline.ledger.listing import BadCursor, PageCursor, RequestFilter
from schemas import ErasurePlanned, PlannedTarget, SealedIdentities

END = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
SAME_INSTANT = END - timedelta(days=25)  # due in five days: due soon
LONG_AGO = END - timedelta(days=40)  # unanswered since: overdue
TIES = 7


@dataclass
class Seeded:
    ledger: Ledger
    requests: list[dict[str, Any]]
    systems: dict[str, set[str]]


def add_unanswered(ledger: Ledger) -> None:
    """Requests received at the very same instant (only their ids order them), due soon; and two
    overdue. None of their systems answered."""
    plans = []
    for index in range(TIES + 2):
        rid, received = str(uuid.uuid4()), SAME_INSTANT if index < TIES else LONG_AGO
        plans.append(ErasurePlanned(
            request_id=rid, received_at=received, due_at=received + timedelta(days=30),
            subject_ref="sr_" + "7" * 32, channel="postal", planned_at=received,
            identities=SealedIdentities(alg="secretbox-xsalsa20poly1305", key_id=rid, ciphertext="c2VjcmV0"),
            targets=[PlannedTarget(system="paper-vendor", expected_turnaround_s=60)]))
    ledger.record(plans, SAME_INSTANT)



@pytest.fixture(scope="module", params=["sqlite", "postgres", "mariadb"])
def seeded(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('pages') / 'ledger.db'}"
    else:
        url = request.getfixturevalue(f"{request.param}_url_module")
    seed(url, 160, 11, END, workers=1, replace=False, report=False)
    ledger = Ledger(url)
    add_unanswered(ledger)
    with ledger.engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(sa.select(requests_table))]
        systems: dict[str, set[str]] = {}
        for rid, system in conn.execute(sa.select(systems_table.c.request_id, systems_table.c.system)):
            systems.setdefault(system, set()).add(rid)
    yield Seeded(ledger, rows, systems)
    ledger.close()


def expected(seeded: Seeded, f: RequestFilter, now: datetime) -> list[str]:
    def keep(r: dict[str, Any]) -> bool:
        open_ = r["status"] == "in_progress"
        search = (f.search or "").strip()
        return ((not f.status or r["status"] == f.status)
                and (not f.overdue or (open_ and r["due_at"] < now))
                and (not f.due_soon or (open_ and now <= r["due_at"] <= now + DUE_SOON_WINDOW))
                and (not f.channel or r["channel"] == f.channel)
                and (not f.system or r["request_id"] in seeded.systems.get(f.system, set()))
                and (not search or r["request_id"].startswith(search.lower()) or r["subject_ref"] == search))
    kept = sorted((r for r in seeded.requests if keep(r)), key=lambda r: (r["received_at"], r["request_id"]),
                  reverse=True)
    return [r["request_id"] for r in kept]


def all_pages(seeded: Seeded, f: RequestFilter, size: int) -> list[list[str]]:
    pages, cursor = [], None
    while True:
        page = seeded.ledger.views.request_page(END, f, cursor, limit=size)
        pages.append([v.request_id for v in page.views])
        if page.next_cursor is None:
            return pages
        cursor = PageCursor.parse(page.next_cursor.token())  # through the URL's spelling


FILTERS = {
    "all": RequestFilter(),
    "in progress": RequestFilter(status="in_progress"),
    "needs attention": RequestFilter(status="needs_attention"),
    "completed with holds": RequestFilter(status="completed_with_holds"),
    "overdue": RequestFilter(overdue=True),
    "due soon": RequestFilter(due_soon=True),
    "retention channel": RequestFilter(channel="retention"),
    "postal channel": RequestFilter(channel="postal"),
    "stripe": RequestFilter(system="stripe"),
    "paper vendor in progress": RequestFilter(system="paper-vendor", status="in_progress"),
    "contact form, completed": RequestFilter(channel="contact_form", status="completed"),
}


@pytest.mark.parametrize("name", FILTERS)
def test_pages_hold_every_matching_request_exactly_once_in_order(seeded: Seeded, name: str) -> None:
    f = FILTERS[name]
    want = expected(seeded, f, END)
    assert want, f"the seeded ledger has requests for the filter {name!r}"
    pages = all_pages(seeded, f, size=6)
    assert [rid for page in pages for rid in page] == want
    assert all(len(page) == 6 for page in pages[:-1]) and 1 <= len(pages[-1]) <= 6
    counted = seeded.ledger.views.request_page(END, f, limit=6, count_cap=1000).matching
    assert counted is not None and (counted.count, counted.capped) == (len(want), False)


def test_requests_received_at_the_same_instant_are_split_across_pages(seeded: Seeded) -> None:
    f = RequestFilter(channel="postal")
    tied = [rid for rid in expected(seeded, f, END)
            if next(r for r in seeded.requests if r["request_id"] == rid)["received_at"] == SAME_INSTANT]
    assert len(tied) == TIES
    pages = all_pages(seeded, f, size=3)
    assert [rid for page in pages for rid in page] == expected(seeded, f, END)


def test_search_by_request_id_prefix_and_by_subject_reference(seeded: Seeded) -> None:
    target = seeded.requests[len(seeded.requests) // 2]
    for text in (target["request_id"], target["request_id"][:8].upper(), f" {target['request_id'][:13]} "):
        found = seeded.ledger.views.request_page(END, RequestFilter(search=text)).views
        assert target["request_id"] in [v.request_id for v in found]
        assert [v.request_id for v in found] == expected(seeded, RequestFilter(search=text), END)
    by_subject = seeded.ledger.views.request_page(END, RequestFilter(search="sr_" + "7" * 32)).views
    assert len(by_subject) == TIES + 2
    for nothing in ("zzz", "sr_unknown", "%", "_"):
        assert seeded.ledger.views.request_page(END, RequestFilter(search=nothing)).views == []


def test_counts_stop_at_the_cap(seeded: Seeded) -> None:
    counted = seeded.ledger.views.request_page(END, RequestFilter(), limit=5, count_cap=20).matching
    assert counted is not None and (counted.count, counted.capped, counted.cap) == (20, True, 20)


def test_the_older_list_call_is_the_first_page(seeded: Seeded) -> None:
    views = seeded.ledger.list_requests(END, "in_progress", False, 200)
    assert [v.request_id for v in views] == expected(seeded, RequestFilter(status="in_progress"), END)
    overdue = seeded.ledger.views.list_requests(END, overdue=True, channel=None, system=None)
    assert [v.request_id for v in overdue] == expected(seeded, RequestFilter(overdue=True), END)


@pytest.mark.parametrize("token", ["", "abc", "12.", ".5a1d", "1" * 30 + ".x", "9" * 20 + ".abc"])
def test_a_damaged_page_token_is_refused_with_what_to_do(token: str) -> None:
    with pytest.raises(BadCursor, match="first page"):
        PageCursor.parse(token)


def test_a_page_token_spells_its_instant_exactly(tmp_path: Path) -> None:
    cursor = PageCursor(datetime(2025, 2, 28, 23, 59, 59, 999999, tzinfo=UTC), str(uuid.uuid4()))
    assert PageCursor.parse(cursor.token()) == cursor
