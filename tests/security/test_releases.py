"""A release checks the end of each hold itself, whatever the release task says.

On PostgreSQL, MariaDB and SQLite: a release task naming categories whose rows must be kept
(invoices until ten years from now) deletes nothing, in both hold modes (rows moved to the
restricted archive, rows marked in place), and says what is still held until when; once a
period has passed, exactly the rows whose own `retain_until` has passed are deleted. The
ledger keeps a hold the store still reports in force, and releases the others.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from connectors.stores.sql_store import ARCHIVE_TABLE, SqlStoreConnector, SqlStoreSettings
from pipeline.devstack.demo import seed_site_database, site_rules
from pipeline.ledger import open_ledger
from schemas import ErasureOutcome, ErasurePlanned, PlannedTarget, SealedIdentities
from tests.test_sql_holds import NOW, OTHERS, POLICY, RID, TARGET, context, person, snapshot

EVERY_HELD_CATEGORY = ("accounting_records", "card_data", "fraud_signals", "invoices")
# Mark mode with the person still findable (her account is not anonymised by this rule set).
MARK_RULES: list[dict[str, Any]] = [
    {"table": "payment_tokens", "via": {"table": "accounts", "key": "id", "column": "account_id",
                                        "match": {"email": "email"}},
     "action": "hold", "category": "card_data", "hold_mode": "mark", "clock_column": "created_at"},
]


@pytest.fixture(params=["sqlite", "postgres", "mariadb"])
def site_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(f"{request.param}_url")
    seed_site_database(url, [OTHERS[0], TARGET, OTHERS[1]])
    return url


def store(url: str, now: datetime, rules: list[dict[str, Any]] | None = None) -> SqlStoreConnector:
    settings = SqlStoreSettings.model_validate({"url": url, "tables": rules or site_rules()})
    return SqlStoreConnector("site-db", settings, clock=lambda: now)


def run(url: str, now: datetime, categories: tuple[str, ...] | None,
        rules: list[dict[str, Any]] | None = None) -> Any:
    connector = store(url, now, rules)
    try:
        extra = {} if categories is None else {"release_categories": categories}
        return connector.erase(person(TARGET), context(attempt=2 if categories else 1, **extra))
    finally:
        connector.close()


def aware(moment: datetime | str) -> datetime:
    """A stored end of hold; SQLite gives the archive's as text, naive in UTC."""
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def test_forged_release_of_archived_invoices_deletes_nothing(site_url: str) -> None:
    held = run(site_url, NOW, None)
    assert held.status == "held"
    before = snapshot(site_url)
    assert {a["data_category"] for a in before[ARCHIVE_TABLE]} == {"invoices", "fraud_signals"}

    forged = run(site_url, NOW + timedelta(days=1), EVERY_HELD_CATEGORY)

    assert snapshot(site_url) == before, "an early release deleted held rows"
    assert forged.status == "held"
    ends = {h.data_category: h.retain_until for h in forged.holds}
    assert ends["invoices"].year == NOW.year + 10 and "fraud_signals" in ends


def test_forged_release_of_rows_marked_in_place_deletes_nothing(site_url: str) -> None:
    held = run(site_url, NOW, None, MARK_RULES)
    assert held.status == "held"
    before = snapshot(site_url)
    assert [r["retain_until"] is not None for r in before["payment_tokens"]].count(True) == 1

    early = run(site_url, NOW + timedelta(days=1), ("card_data",), MARK_RULES)

    assert snapshot(site_url) == before
    assert early.status == "held", "a release of data still held must not report it erased"
    assert [(h.data_category, h.retain_until) for h in early.holds] == [
        ("card_data", held.holds[0].retain_until)]


def test_release_after_the_period_deletes_exactly_the_ended_rows(site_url: str) -> None:
    held = run(site_url, NOW, None)
    ends = {h.data_category: h.retain_until for h in held.holds}
    later = max(ends["card_data"], ends["fraud_signals"]) + timedelta(days=1)
    assert later < ends["invoices"]
    before = snapshot(site_url)

    released = run(site_url, later, EVERY_HELD_CATEGORY)

    after = snapshot(site_url)
    ended = [a for a in before[ARCHIVE_TABLE] if aware(a["retain_until"]) <= later]
    assert {a["data_category"] for a in ended} == {"fraud_signals"}
    assert after[ARCHIVE_TABLE] == [a for a in before[ARCHIVE_TABLE] if a not in ended]
    assert after["payment_tokens"] == [r for r in before["payment_tokens"]
                                       if r["retain_until"] is None or aware(r["retain_until"]) > later]
    assert after["orders"] == before["orders"], "accounting records end later: still held"
    assert released.status == "held"
    assert {h.data_category for h in released.holds} == {"invoices"}


def test_ledger_keeps_a_hold_the_store_still_reports(tmp_path: Path) -> None:
    ledger = open_ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    try:
        sealed = SealedIdentities(alg="secretbox-xsalsa20poly1305", key_id=RID, ciphertext="c2VjcmV0")
        early, late = NOW + timedelta(days=10), NOW + timedelta(days=400)
        ledger.record([
            ErasurePlanned(request_id=RID, received_at=NOW, due_at=NOW + timedelta(days=30),
                           subject_ref="sr_t", identities=sealed, planned_at=NOW,
                           targets=[PlannedTarget(system="site-db", expected_turnaround_s=60)]),
            ErasureOutcome(request_id=RID, system="site-db", attempt=1, status="held", occurred_at=NOW,
                           holds=[POLICY.hold("card_data", early), POLICY.hold("invoices", early)])], NOW)
        asked = early + timedelta(days=1)
        [task] = ledger.request_releases(asked)
        # The store's clock and rows say the invoices are kept longer: it deleted only the cards.
        ledger.record([ErasureOutcome(request_id=RID, system="site-db", attempt=task.attempt,
                                      status="held", purpose="release", occurred_at=asked,
                                      holds=[POLICY.hold("invoices", late)])], asked)
        active = {h.data_category: h for h in ledger.active_holds()}
        assert set(active) == {"invoices"}, "card data released, invoices still in force"
        assert aware(active["invoices"].retain_until) == late
        assert active["invoices"].release_requested_at is None
        assert ledger.request_releases(asked + timedelta(hours=2)) == [], "asked again only at its end"
        assert [t.release_categories for t in ledger.request_releases(late)] == [["invoices"]]
    finally:
        ledger.close()
