"""The SQL store connector against real PostgreSQL, MariaDB and SQLite."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from connectors.base import PermanentError, TaskContext
from connectors.stores.sql_store import SqlStoreConnector, SqlStoreSettings, TableRule
from schemas import Identity, SubjectIdentities

CONTEXT = TaskContext(request_id="7d5e3c1a-4b2f-4c8d-9e6f-0a1b2c3d4e5f", system="site-db", attempt=1)
PEOPLE = [
    (1, "ines.target@example.com", "+33611111111", "Inès Target"),
    (2, "other.one@example.com", "+33622222222", "Other One"),
    (3, "other.two@example.com", "+33633333333", "Other Two"),
]
RULES = [
    TableRule(table="messages", match={"email": "author_email"}, action="delete"),
    TableRule(table="orders", match={"email": "buyer_email"}, action="anonymise",
              set={"buyer_email": None, "buyer_name": "anonymised"}),
    TableRule(table="accounts", match={"email": "email", "phone": "phone"}, action="delete"),
]


@pytest.fixture(params=["sqlite", "postgres", "mariadb"])
def site_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(f"{request.param}_url")
    engine = sa.create_engine(url)
    meta = sa.MetaData()
    accounts = sa.Table("accounts", meta, sa.Column("id", sa.Integer, primary_key=True),
                        sa.Column("email", sa.String(200), unique=True),
                        sa.Column("phone", sa.String(40)), sa.Column("full_name", sa.String(200)))
    messages = sa.Table("messages", meta, sa.Column("id", sa.Integer, primary_key=True),
                        sa.Column("account_id", sa.ForeignKey("accounts.id"), nullable=False),
                        sa.Column("author_email", sa.String(200)), sa.Column("body", sa.Text))
    orders = sa.Table("orders", meta, sa.Column("id", sa.Integer, primary_key=True),
                      sa.Column("buyer_email", sa.String(200), nullable=True),
                      sa.Column("buyer_name", sa.String(200)), sa.Column("total_cents", sa.Integer))
    meta.create_all(engine)
    with engine.begin() as conn:
        for pid, email, phone, name in PEOPLE:
            conn.execute(accounts.insert().values(id=pid, email=email, phone=phone, full_name=name))
            conn.execute(messages.insert().values(account_id=pid, author_email=email, body="hello"))
            conn.execute(orders.insert().values(buyer_email=email, buyer_name=name, total_cents=100 * pid))
    engine.dispose()
    return url


def snapshot(url: str) -> dict[str, list[tuple[Any, ...]]]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        result = {t: [tuple(r) for r in conn.execute(sa.text(f"SELECT * FROM {t} ORDER BY id"))]
                  for t in ("accounts", "messages", "orders")}
    engine.dispose()
    return result


def person(email: str) -> SubjectIdentities:
    return SubjectIdentities(identities=[Identity(identity_type="email", identity_value=email)])


def test_erases_only_the_subject_and_second_run_finds_nothing(site_url: str) -> None:
    before = snapshot(site_url)
    connector = SqlStoreConnector("site-db", SqlStoreSettings(url=site_url, tables=RULES))
    try:
        result = connector.erase(person("Ines.Target@Example.com"), CONTEXT)
        assert result.status == "erased"
        assert result.evidence and result.evidence.records_affected == 3
        after = snapshot(site_url)
        # Other people: every row unchanged.
        for table in ("accounts", "messages"):
            assert after[table] == [r for r in before[table] if "ines.target@example.com" not in r]
        others_orders = [r for r in before["orders"] if r[1] != "ines.target@example.com"]
        assert [r for r in after["orders"] if r[1] is not None] == others_orders
        # The subject's order is kept for its amount but holds nothing about her.
        anonymised = [r for r in after["orders"] if r[1] is None]
        assert anonymised == [(1, None, "anonymised", 100)]
        assert connector.erase(person("ines.target@example.com"), CONTEXT).status == "not_found"
    finally:
        connector.close()


def test_matches_on_every_identity(site_url: str) -> None:
    connector = SqlStoreConnector("site-db", SqlStoreSettings(url=site_url, tables=RULES))
    try:
        subject = SubjectIdentities(identities=[
            Identity(identity_type="phone", identity_value="+33622222222"),
            Identity(identity_type="email", identity_value="other.one@example.com")])
        assert connector.erase(subject, CONTEXT).status == "erased"
        assert [r[0] for r in snapshot(site_url)["accounts"]] == [1, 3]
    finally:
        connector.close()


def test_foreign_keys_hold_and_a_failure_rolls_everything_back(site_url: str) -> None:
    before = snapshot(site_url)
    connector = SqlStoreConnector("site-db", SqlStoreSettings(url=site_url, tables=[RULES[0], RULES[2]]))
    try:
        subject = SubjectIdentities(identities=[
            Identity(identity_type="phone", identity_value="+33622222222")])
        # The account is found by phone, its message only by e-mail: deleting the account
        # would orphan the message, and the database refuses it.
        with pytest.raises(PermanentError) as info:
            connector.erase(subject, CONTEXT)
        assert "+336" not in str(info.value)
        assert snapshot(site_url) == before, "the failed transaction left everything as it was"
    finally:
        connector.close()


def test_missing_table_is_a_permanent_error_naming_it(sqlite_url: str) -> None:
    sa.create_engine(sqlite_url).connect().close()
    connector = SqlStoreConnector("site-db", SqlStoreSettings(url=sqlite_url, tables=[
        TableRule(table="nope", match={"email": "email"}, action="delete")]))
    with pytest.raises(PermanentError, match="'nope'"):
        connector.erase(person("a@b.example"), CONTEXT)


def test_rules_are_validated() -> None:
    with pytest.raises(ValueError, match="needs 'set'"):
        TableRule(table="t", match={"email": "e"}, action="anonymise")
    with pytest.raises(ValueError, match="exactly one of 'url' and 'url_env'"):
        SqlStoreSettings(tables=RULES)


def test_concurrent_first_erasures_see_whole_tables(site_url: str) -> None:
    """The worker's threads all start at once: none may see a half-reflected table."""
    from concurrent.futures import ThreadPoolExecutor

    connector = SqlStoreConnector("site-db", SqlStoreSettings(url=site_url, tables=RULES))
    try:
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda i: connector.erase(person(f"nobody{i}@example.com"), CONTEXT),
                                    range(16)))
        assert {r.status for r in results} == {"not_found"}
    finally:
        connector.close()
