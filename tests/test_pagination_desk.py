"""The desk's request list over real HTTP: its count, its "older requests" links, its filters."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
import sqlalchemy as sa

from bench.seed_ledger import seed
from pipeline.desk.app import DeskSecurity, Publisher, create_app
from pipeline.ledger import Ledger, requests_table, systems_table
from pipeline.ledger.accounts import Access
from pipeline.streaming import topics
from tests.desk_server import form_token, serve
from tests.fakes.signers import TestSigners

OFFICER = ("olivia", "officer-password-1")
REQUESTS = 130
ROW = re.compile(r'<td><a href="/requests/([0-9a-f-]{36})">')
NEXT = re.compile(r'<a href="([^"]+)" id="next-page"')


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[httpx.Client, Ledger]]:
    url = f"sqlite:///{tmp_path_factory.mktemp('desk-pages') / 'ledger.db'}"
    seed(url, REQUESTS, 5, datetime.now(UTC), workers=1, replace=False, report=False)
    ledger = Ledger(url)
    Access(ledger).set_user(OFFICER[0], "officer", OFFICER[1], datetime.now(UTC))
    sent: list[tuple[str, bytes]] = []
    publisher = Publisher(lambda topic, key, value, headers: sent.append((topic, value)),
                          TestSigners().signer("desk"))
    app = create_app(ledger, Access(ledger), publisher, None, "test-session-secret", topics.task_topic,
                     topics.REQUESTS, security=DeskSecurity(cookie_secure=False))
    with serve(app) as base, httpx.Client(base_url=base, timeout=60) as officer:
        # scrypt takes its time on a busy machine: one login for the module, a patient client
        form = {"username": OFFICER[0], "password": OFFICER[1], "csrf": form_token(officer)}
        assert officer.post("/login", data=form).status_code == 303
        yield officer, ledger
    ledger.close()
    assert sent == [], "reading the list publishes nothing"


def newest_first(ledger: Ledger, where: sa.ColumnElement[bool] | None = None) -> list[str]:
    query = sa.select(requests_table.c.request_id).order_by(requests_table.c.received_at.desc(),
                                                           requests_table.c.request_id.desc())
    if where is not None:
        query = query.where(where)
    with ledger.engine.connect() as conn:
        return list(conn.execute(query).scalars())


def walk(client: httpx.Client, first: str) -> tuple[list[str], list[str]]:
    """Every request id listed, following the "older requests" link; the pages' texts."""
    ids, texts, link = [], [], first
    while link:
        response = client.get(link)
        assert response.status_code == 200, response.text
        texts.append(response.text)
        ids.extend(ROW.findall(response.text))
        found = NEXT.search(response.text)
        link = found.group(1).replace("&amp;", "&") if found else ""
    return ids, texts


def test_the_older_links_list_every_request_once_newest_first(desk: tuple[httpx.Client, Ledger]) -> None:
    officer, ledger = desk
    ids, texts = walk(officer, "/")
    assert ids == newest_first(ledger) and len(ids) == REQUESTS
    assert f"{REQUESTS:,} requests match" in texts[0]
    assert len(texts) == 3 and 'id="first-page"' in texts[1] and 'id="first-page"' not in texts[0]


def test_filters_go_with_the_pages(desk: tuple[httpx.Client, Ledger]) -> None:
    officer, ledger = desk
    stripe = sa.select(systems_table.c.request_id).where(systems_table.c.system == "stripe")
    want = newest_first(ledger, requests_table.c.request_id.in_(stripe))
    ids, texts = walk(officer, "/?system=stripe")
    assert ids == want and len(want) > 50, "more than a page of them"
    assert all("system=stripe" in t for t in texts[:-1]), "the next link keeps the filter"
    retention, _ = walk(officer, "/?channel=retention&status=completed")
    assert retention == newest_first(ledger, sa.and_(requests_table.c.channel == "retention",
                                                     requests_table.c.status == "completed"))
    assert retention, "the seeded ledger has completed requests from the retention sweep"
    one = want[7]
    found, texts = walk(officer, f"/?q={one}")
    assert found == [one] and "1 request matches" in texts[0]
    assert one in walk(officer, f"/?q={one[:9].upper()}")[0]


def test_a_damaged_page_link_is_a_clear_400(desk: tuple[httpx.Client, Ledger]) -> None:
    officer, _ = desk
    response = officer.get("/", params={"after": "not-a-cursor"})
    assert response.status_code == 400 and "go back to the first page" in response.text
