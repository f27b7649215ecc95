"""A batch of people erased from the site database in one transaction (SQLite, PostgreSQL, MariaDB).

The demo schema (children found through accounts, holds archived or marked in place) is seeded
with several people. A batch must leave the database, and answer, exactly as erasing its people
one after the other would; a neighbour who shares nothing keeps every row; one person whose rows
the database refuses to erase fails alone; a database that cannot be reached requeues every task.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from connectors.base import BatchConnector, BatchItem, ConnectorError, EraseResult, TaskContext
from connectors.stores.sql_store import ARCHIVE_TABLE, SqlStoreConnector, SqlStoreSettings
from pipeline.devstack import demo
from pipeline.devstack.demo import Person, seed_site_database, site_metadata, site_rules
from pipeline.policy import load_policy
from pipeline.settings import Settings
from pipeline.worker.erase import InProcessRetries, TaskEraser, requeue_policy
from schemas import Identity, SubjectIdentities
from tests.worker_fakes import EMAIL, Keys, sealed_task

NOW = datetime.now(UTC).replace(microsecond=0)
POLICY, _ = load_policy(None)
HELD = Person("Inès Cible", "ines.cible@example.com", "+33611111111", orders=2, card_added_days_ago=30,
              fraud_signal=True)
PLAIN = Person("Rose Simple", "rose.simple@example.com", "+33633333333")
SHARED_ROW = Person("Paul Partage", "paul.partage@example.com", "+33622222222", orders=1,
                    card_added_days_ago=400)
NEIGHBOUR = Person("Nina Voisine", "nina.voisine@example.com", "+33644444444", orders=1,
                   fraud_signal=True)
NOBODY = Person("Nobody Here", "nobody.here@example.com", "+33600000000")
TABLES = [t.name for t in site_metadata.sorted_tables]


class FixedDatetime(datetime):
    @classmethod
    def now(cls, tz: Any = None) -> FixedDatetime:  # type: ignore[override]
        return cls.fromtimestamp(NOW.timestamp(), tz)


@pytest.fixture(params=["sqlite", "postgres", "mariadb"])
def site_url(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    # Seeded twice (one person at a time, then in a batch): the same dates and fingerprints both times.
    monkeypatch.setattr(demo, "datetime", FixedDatetime)
    monkeypatch.setattr(demo.secrets, "token_hex", lambda n: "ab" * (n or 8))
    url: str = request.getfixturevalue(f"{request.param}_url")
    reseed(url)
    return url


def reseed(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP TABLE IF EXISTS {ARCHIVE_TABLE}"))
    site_metadata.drop_all(engine)
    engine.dispose()
    seed_site_database(url, [SHARED_ROW, HELD, NEIGHBOUR, PLAIN])


def snapshot(url: str) -> dict[str, list[dict[str, Any]]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = {name: [dict(r._mapping) for r in conn.execute(
                sa.select(site_metadata.tables[name]).order_by(site_metadata.tables[name].c.id))]
                for name in TABLES}
            rows[ARCHIVE_TABLE] = archived(conn)
    finally:
        engine.dispose()
    return rows


def archived(conn: sa.Connection) -> list[dict[str, Any]]:
    """The archive's rows without their ids (they follow the order of writing: per rule in a batch)."""
    if not sa.inspect(conn).has_table(ARCHIVE_TABLE):
        return []
    archive = sa.Table(ARCHIVE_TABLE, sa.MetaData(), autoload_with=conn)
    rows = [{k: v for k, v in r._mapping.items() if k != "id"} for r in conn.execute(sa.select(archive))]
    return sorted(rows, key=lambda r: (r["request_id"], r["source_table"], r["row_data"]))


def connector(url: str) -> SqlStoreConnector:
    settings = SqlStoreSettings.model_validate({"url": url, "tables": site_rules()})
    return SqlStoreConnector("site-db", settings, clock=lambda: NOW)


def item(*identities: tuple[str, str]) -> BatchItem:
    subject = SubjectIdentities(identities=[Identity(identity_type=t, identity_value=v)  # type: ignore[arg-type]
                                            for t, v in identities])
    return BatchItem(subject, TaskContext(request_id=str(uuid.uuid4()), system="site-db", attempt=1,
                                          received_at=NOW - timedelta(days=1), retention=POLICY))


def summary(answer: EraseResult | ConnectorError) -> tuple[Any, ...]:
    if isinstance(answer, ConnectorError):
        return ("error", answer.kind)
    return (answer.status, answer.evidence.records_affected if answer.evidence else None,
            [(h.data_category, h.retain_until) for h in answer.holds])


def mentions(rows: dict[str, list[dict[str, Any]]], person: Person) -> list[str]:
    return [table for table, table_rows in rows.items() for row in table_rows
            if person.email in str(row) or person.name in str(row) or person.phone in str(row)]


def test_a_batch_erases_exactly_as_one_person_after_another(site_url: str) -> None:
    # Paul twice (by address, then by phone: the second finds his rows gone), Inès with holds,
    # Rose with none, and somebody the site never knew.
    items = [item(("email", SHARED_ROW.email)), item(("email", HELD.email.upper())),
             item(("email", NOBODY.email)), item(("phone", SHARED_ROW.phone)), item(("email", PLAIN.email))]
    store = connector(site_url)
    try:
        one_by_one = [summary(store._erase_one(i)) for i in items]
    finally:
        store.close()
    expected = snapshot(site_url)
    reseed(site_url)
    store = connector(site_url)
    try:
        together = [summary(a) for a in store.erase_batch(items)]
    finally:
        store.close()
    assert together == one_by_one
    assert snapshot(site_url) == expected
    statuses = [s[0] for s in together]
    assert statuses == ["held", "held", "not_found", "not_found", "erased"]
    assert {c for c, _ in together[1][2]} >= {"accounting_records", "fraud_signals", "invoices"}
    after = snapshot(site_url)
    assert mentions(after, PLAIN) == [] and mentions(after, NOBODY) == []


def test_the_neighbour_who_shares_nothing_keeps_every_row(site_url: str) -> None:
    before = snapshot(site_url)
    store = connector(site_url)
    try:
        answers = store.erase_batch([item(("email", HELD.email)), item(("email", PLAIN.email)),
                                     item(("email", SHARED_ROW.email))])
    finally:
        store.close()
    assert [summary(a)[0] for a in answers] == ["held", "erased", "held"]
    after = snapshot(site_url)
    for table in ("accounts", "newsletter_consents", "invoices"):
        rows = [r for r in before[table] if mentions({table: [r]}, NEIGHBOUR)]
        assert rows and all(r in after[table] for r in rows), table
    neighbour_ids = {r["id"] for r in before["accounts"] if r["email"] == NEIGHBOUR.email}
    for table in ("profiles", "addresses", "orders", "fraud_signals", "support_messages"):
        rows = [r for r in before[table] if r["account_id"] in neighbour_ids]
        assert rows and all(r in after[table] for r in rows), table
    assert not mentions({ARCHIVE_TABLE: after[ARCHIVE_TABLE]}, NEIGHBOUR)


REFUSE = {
    "sqlite": ["CREATE TRIGGER refuse_locked BEFORE DELETE ON profiles WHEN OLD.bio = 'locked' "
               "BEGIN SELECT RAISE(ABORT, 'profile locked'); END"],
    "postgresql": [
        "CREATE FUNCTION refuse_locked() RETURNS trigger AS $$ BEGIN IF OLD.bio = 'locked' THEN "
        "RAISE EXCEPTION 'profile locked'; END IF; RETURN OLD; END $$ LANGUAGE plpgsql",
        "CREATE TRIGGER refuse_locked BEFORE DELETE ON profiles FOR EACH ROW "
        "EXECUTE FUNCTION refuse_locked()"],
    "mysql": ["CREATE TRIGGER refuse_locked BEFORE DELETE ON profiles FOR EACH ROW BEGIN "
              "IF OLD.bio = 'locked' THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'profile locked'; "
              "END IF; END"],
}


def test_a_person_whose_rows_the_database_refuses_fails_alone(site_url: str) -> None:
    engine = sa.create_engine(site_url)
    with engine.begin() as conn:
        for statement in REFUSE[engine.dialect.name]:
            conn.exec_driver_sql(statement)
        conn.execute(sa.text("UPDATE profiles SET bio = 'locked' WHERE account_id = "
                             "(SELECT id FROM accounts WHERE email = :e)"), {"e": SHARED_ROW.email})
    engine.dispose()
    before = snapshot(site_url)
    store = connector(site_url)
    try:
        answers = store.erase_batch([item(("email", HELD.email)), item(("email", SHARED_ROW.email)),
                                     item(("email", PLAIN.email))])
    finally:
        store.close()
    assert [summary(a)[0] for a in answers] == ["held", "error", "erased"]
    assert isinstance(answers[1], ConnectorError) and SHARED_ROW.email not in str(answers[1])
    after = snapshot(site_url)
    # Paul's transaction rolled back: every row of his is as it was.
    for table in TABLES:
        his = [r for r in before[table] if mentions({table: [r]}, SHARED_ROW)]
        assert all(r in after[table] for r in his), table
    assert mentions(after, PLAIN) == []
    assert not [r for r in after["accounts"] if r["email"] == HELD.email]


def test_a_batch_of_one_is_an_erasure(site_url: str) -> None:
    store = connector(site_url)
    try:
        assert isinstance(store, BatchConnector)
        [answer] = store.erase_batch([item(("email", PLAIN.email))])
    finally:
        store.close()
    assert summary(answer)[0] == "erased"


def test_a_database_that_cannot_be_reached_requeues_every_task_of_the_batch() -> None:
    unreachable = "postgresql+psycopg://postgres@127.0.0.1:1/test"
    store = SqlStoreConnector("site-db", SqlStoreSettings.model_validate(
        {"url": unreachable, "tables": site_rules()}), clock=lambda: NOW)
    calls: list[int] = []
    original = store.erase_batch

    def counted(items: Any) -> list[EraseResult | ConnectorError]:
        calls.append(len(items))
        return original(items)

    store.erase_batch = counted  # type: ignore[method-assign]
    keys = Keys()
    eraser = TaskEraser("site-db", store, keys, requeue_policy(Settings()),
                        InProcessRetries(attempts=3, max_wait_s=1.0, sleep=lambda _: None), POLICY)
    tasks = [sealed_task(keys.key, system="site-db") for _ in range(4)]
    try:
        handled = eraser.erase_batch(tasks)
    finally:
        store.close()
    assert calls == [4, 4, 4]  # the whole batch, retried in process, then requeued
    assert [h.outcome.status for h in handled] == ["retrying"] * 4
    assert [h.requeue.attempt if h.requeue else None for h in handled] == [2] * 4
    assert [h.outcome.request_id for h in handled] == [t.request_id for t in tasks]
    assert all(EMAIL not in (h.outcome.error.message if h.outcome.error else "") for h in handled)


def test_a_row_the_database_compares_differently_is_erased_as_one_at_a_time_would(site_url: str) -> None:
    # MariaDB's collations ignore trailing spaces: its `phone IN (...)` matches this row where
    # Python's comparison would not; the batch then erases one person at a time, and agrees.
    def pad_phone() -> None:
        engine = sa.create_engine(site_url)
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE accounts SET phone = :padded WHERE email = :e"),
                         {"padded": PLAIN.phone + " ", "e": PLAIN.email})
        engine.dispose()

    items = [item(("phone", PLAIN.phone)), item(("email", HELD.email))]
    pad_phone()
    store = connector(site_url)
    try:
        one_by_one = [summary(store._erase_one(i)) for i in items]
    finally:
        store.close()
    expected = snapshot(site_url)
    reseed(site_url)
    pad_phone()
    store = connector(site_url)
    try:
        together = [summary(a) for a in store.erase_batch(items)]
    finally:
        store.close()
    assert together == one_by_one and snapshot(site_url) == expected
    assert together[1][0] == "held"
