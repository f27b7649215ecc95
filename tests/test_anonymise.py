"""An `anonymise` rule must anonymise: a value derived from the data is pseudonymisation, refused when
the register is loaded, with the reason, the file and the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from connectors.base import ConfigError, TaskContext
from connectors.stores.sql_store import SqlStoreConnector, SqlStoreSettings
from pipeline.devstack.demo import demo_systems
from pipeline.register import load_systems
from schemas import Identity, SubjectIdentities

ACCOUNTS = 8  # the demo's accounts rule: anonymise email, full_name, phone


def register_with(tmp_path: Path, accounts_rule: dict[str, Any]) -> Path:
    data: dict[str, Any] = demo_systems("sqlite:///site.db", "http://127.0.0.1:1")
    data["systems"][0]["connector"]["tables"][ACCOUNTS] = accounts_rule
    path = tmp_path / "systems.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def accounts_rule(**set_: Any) -> dict[str, Any]:
    return {"table": "accounts", "match": {"email": "email", "phone": "phone"}, "action": "anonymise",
            "category": "account", "set": set_}


@pytest.mark.parametrize(("value", "why"), [
    ({"sha256": "email"}, "a computed value"),
    ("{email}", "a template of the row"),
    ("anon-${email}", "a template of the row"),
    ("sha2(email, 256)", "applies a function"),
    ("MD5(email)", "applies a function"),
    ("concat('x', id)", "applies a function"),
])
def test_an_identity_replaced_by_a_value_derived_from_it_is_refused(
        tmp_path: Path, value: Any, why: str) -> None:
    path = register_with(tmp_path, accounts_rule(email=value, phone=None, full_name=None))
    with pytest.raises(ConfigError) as info:
        load_systems(path)
    message = str(info.value)
    assert str(path) in message and "systems[0].connector.tables[8]" in message
    assert why in message and "pseudonymisation, not anonymisation" in message
    assert "Set a constant" in message


def test_anonymise_leaving_an_identity_column_it_matches_on_is_refused(tmp_path: Path) -> None:
    path = register_with(tmp_path, accounts_rule(email=None, full_name=None))
    with pytest.raises(ConfigError) as info:
        load_systems(path)
    message = str(info.value)
    assert "systems[0].connector.tables[8]" in message
    assert "leaves 'phone' (its phone) as it is" in message and "nothing is anonymised" in message


def test_constants_anonymise(tmp_path: Path) -> None:
    register = load_systems(register_with(tmp_path, accounts_rule(email=None, phone=None,
                                                                  full_name="(erased)")))
    assert register.get("site-db").connector_settings() is not None


def test_a_held_row_marked_in_place_may_not_be_pseudonymised_either() -> None:
    with pytest.raises(ValueError, match="pseudonymisation"):
        SqlStoreSettings(url="sqlite://", tables=[{  # type: ignore[list-item]
            "table": "orders", "match": {"email": "buyer_email"}, "action": "hold", "category": "invoices",
            "hold_mode": "mark", "set": {"buyer_email": "hash({email})"}}])


def test_constants_are_written_as_they_are(sqlite_url: str) -> None:
    """What the rule says is what the row holds afterwards: nothing of the person."""
    engine = sa.create_engine(sqlite_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE accounts (id INTEGER PRIMARY KEY, email TEXT, phone TEXT, "
                             "full_name TEXT)")
        conn.exec_driver_sql("INSERT INTO accounts VALUES (1, 'ada@example.org', '+33600000009', 'Ada L')")
    connector = SqlStoreConnector("site-db", SqlStoreSettings.model_validate({"url": sqlite_url, "tables": [
        accounts_rule(email=None, phone=None, full_name="(erased)")]}))
    subject = SubjectIdentities(identities=[
        Identity(identity_type="email", identity_value="ada@example.org")])
    try:
        result = connector.erase(subject, TaskContext(request_id="r", system="site-db", attempt=1))
    finally:
        connector.close()
    with engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT * FROM accounts").all()
    engine.dispose()
    assert result.status == "erased" and [tuple(r) for r in rows] == [(1, None, None, "(erased)")]
