"""Holds in the site database (PostgreSQL, MariaDB, SQLite): keep only what the law requires.

The demo schema is seeded with several people; after one person's request, every
row of theirs is gone except the held categories, held rows carry `retain_until`,
and every other person's rows are unchanged, row by row.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from connectors.base import TaskContext
from connectors.stores.sql_store import ARCHIVE_TABLE, SqlStoreConnector, SqlStoreSettings
from pipeline.devstack.demo import Person, seed_site_database, site_metadata, site_rules
from pipeline.ledger import open_ledger
from pipeline.policy import load_policy
from schemas import (
    ErasureOutcome,
    ErasurePlanned,
    Identity,
    PlannedTarget,
    SealedIdentities,
    SubjectIdentities,
)

RID = "0b8f2a6c-1d3e-4f5a-8b7c-9d0e1f2a3b4c"
NOW = datetime.now(UTC).replace(microsecond=0)
TARGET = Person("Inès Cible", "ines.cible@example.com", "+33611111111", orders=2,
                card_added_days_ago=30, fraud_signal=True)
OTHERS = [
    Person("Paul Autre", "paul.autre@example.com", "+33622222222", orders=1, card_added_days_ago=20,
           fraud_signal=True),
    Person("Rose Autre", "rose.autre@example.com", "+33633333333"),
]
POLICY, _ = load_policy(None)
TABLES = [t.name for t in site_metadata.sorted_tables]


@pytest.fixture(params=["sqlite", "postgres", "mariadb"])
def site_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(f"{request.param}_url")
    seed_site_database(url, [OTHERS[0], TARGET, OTHERS[1]])
    return url


def snapshot(url: str) -> dict[str, list[dict[str, Any]]]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        result = {name: [dict(r._mapping) for r in conn.execute(
            sa.select(site_metadata.tables[name]).order_by(site_metadata.tables[name].c.id))]
            for name in TABLES}
        if sa.inspect(conn).has_table(ARCHIVE_TABLE):
            result[ARCHIVE_TABLE] = [dict(r._mapping) for r in conn.execute(
                sa.text(f"SELECT * FROM {ARCHIVE_TABLE} ORDER BY id"))]
    engine.dispose()
    return result


def account_ids(rows: dict[str, list[dict[str, Any]]], email: str) -> set[int]:
    return {r["id"] for r in rows["accounts"] if r["email"] == email}


def context(attempt: int = 1, **extra: Any) -> TaskContext:
    return TaskContext(request_id=RID, system="site-db", attempt=attempt, received_at=NOW,
                       retention=POLICY, **extra)


def person(p: Person) -> SubjectIdentities:
    return SubjectIdentities(identities=[Identity(identity_type="email", identity_value=p.email)])


def connector(url: str, now: datetime = NOW) -> SqlStoreConnector:
    settings = SqlStoreSettings.model_validate({"url": url, "tables": site_rules()})
    return SqlStoreConnector("site-db", settings, clock=lambda: now)


def mentions(row: dict[str, Any], p: Person) -> bool:
    text = json.dumps(row, default=str)
    return p.email in text or p.name in text or p.phone in text


def test_only_held_categories_remain_and_others_are_untouched(site_url: str) -> None:
    before = snapshot(site_url)
    target_id = account_ids(before, TARGET.email).pop()
    store = connector(site_url)
    try:
        result = store.erase(person(TARGET), context())
    finally:
        store.close()
    assert result.status == "held"
    assert {h.data_category for h in result.holds} == {
        "invoices", "accounting_records", "card_data", "fraud_signals"}
    invoices_hold = next(h for h in result.holds if h.data_category == "invoices")
    assert invoices_hold.citation == "Code de commerce, art. L123-22"
    assert invoices_hold.retain_until.year == NOW.year + 10
    after = snapshot(site_url)

    # Nothing that names her is left in the live tables, except the rows held in place.
    for table in ("accounts", "profiles", "addresses", "support_messages", "newsletter_consents",
                  "invoices", "fraud_signals"):
        assert not [r for r in after[table] if mentions(r, TARGET) or (r.get("account_id") == target_id
                    and table != "accounts")], table
    assert [r for r in after["accounts"] if r["id"] == target_id] == [
        {**next(r for r in before["accounts"] if r["id"] == target_id),
         "email": None, "full_name": None, "phone": None}]
    held_orders = [r for r in after["orders"] if r["account_id"] == target_id]
    held_tokens = [r for r in after["payment_tokens"] if r["account_id"] == target_id]
    assert len(held_orders) == 2 and all(r["retain_until"] is not None for r in held_orders)
    assert len(held_tokens) == 1 and held_tokens[0]["retain_until"] is not None
    archived = after[ARCHIVE_TABLE]
    assert {(a["source_table"], a["data_category"]) for a in archived} == {
        ("invoices", "invoices"), ("fraud_signals", "fraud_signals")}
    assert all(a["request_id"] == RID and a["retain_until"] is not None for a in archived)

    # Everybody else: every row exactly as it was.
    for table in TABLES:
        def others(rows: list[dict[str, Any]], t: str = table) -> list[dict[str, Any]]:
            return [r for r in rows if not mentions(r, TARGET) and r.get("account_id") != target_id
                    and not (t == "accounts" and r["id"] == target_id)
                    and not (t == "invoices" and r["billing_email"] == TARGET.email)]
        assert others(after[table]) == others(before[table]), table


def test_second_run_changes_nothing(site_url: str) -> None:
    store = connector(site_url)
    try:
        store.erase(person(TARGET), context())
        once = snapshot(site_url)
        again = store.erase(person(TARGET), context())
    finally:
        store.close()
    assert again.status == "not_found" and again.holds == []
    assert snapshot(site_url) == once


def test_nobody_by_that_address(site_url: str) -> None:
    before = snapshot(site_url)
    store = connector(site_url)
    try:
        result = store.erase(person(Person("X", "nobody@example.com", "+0")), context())
    finally:
        store.close()
    assert result.status == "not_found"
    assert {k: v for k, v in snapshot(site_url).items() if k != ARCHIVE_TABLE} == before


def test_clock_past_retain_until_releases_through_the_ledger(site_url: str, sqlite_url: str,
                                                             tmp_path: Any) -> None:
    """The whole hold life: held, recorded, release asked when the clock passes, erased, recorded."""
    ledger = open_ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    store = connector(site_url)
    try:
        held = store.erase(person(TARGET), context())
        sealed = SealedIdentities(alg="secretbox-xsalsa20poly1305", key_id=RID, ciphertext="c2VjcmV0")
        target = PlannedTarget(system="site-db", expected_turnaround_s=60)
        ledger.record([
            ErasurePlanned(request_id=RID, received_at=NOW, due_at=NOW + timedelta(days=30),
                           subject_ref="sr_t", identities=sealed, planned_at=NOW, targets=[target]),
            ErasureOutcome(request_id=RID, system="site-db", attempt=1, status="held", holds=held.holds,
                           evidence=held.evidence, occurred_at=NOW)], NOW)
        later = max(h.retain_until for h in held.holds
                    if h.data_category in ("card_data", "fraud_signals")) + timedelta(days=1)
        tasks = ledger.request_releases(later)
        assert [(t.purpose, t.release_categories) for t in tasks] == [("release", ["card_data",
                                                                                   "fraud_signals"])]
        before = snapshot(site_url)
        task = tasks[0]
        released = connector(site_url, now=later).erase(person(TARGET), context(
            attempt=task.attempt, release_categories=tuple(task.release_categories or ())))
        assert released.status == "erased"
        after = snapshot(site_url)
        assert [r for r in after["payment_tokens"] if r["retain_until"] is not None and
                r["retain_until"].replace(tzinfo=UTC) <= later] == []
        assert not [a for a in after[ARCHIVE_TABLE] if a["data_category"] == "fraud_signals"]
        assert [a["data_category"] for a in after[ARCHIVE_TABLE]] == ["invoices", "invoices"]
        assert len([r for r in after["orders"] if r["retain_until"] is not None]) == 2, "still held"
        assert len(after["payment_tokens"]) == len(before["payment_tokens"]) - 1, "Paul's card stays"
        ledger.record([ErasureOutcome(request_id=RID, system="site-db", attempt=task.attempt,
                                      status="erased", purpose="release", evidence=released.evidence,
                                      occurred_at=later)], later)
        history = [(e.kind, e.system) for e in ledger.events(RID)]
        assert ("release_requested", "site-db") in history and ("released", "site-db") in history
        assert {h.data_category for h in ledger.active_holds()} == {"invoices", "accounting_records"}
    finally:
        store.close()
        ledger.close()
