"""Retention sweeps and backup retention as systems.yaml declares them: checked when the register
loads, each error naming the file and the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from dateutil.relativedelta import relativedelta

from connectors.base import ConfigError
from pipeline.devstack.demo import demo_systems
from pipeline.register import load_systems
from pipeline.sweep.plan import sweep_request_id
from pipeline.sweep.rules import parse_period
from schemas.models import UUID4_PATTERN

SWEEP: dict[str, Any] = {
    "name": "inactive-accounts", "description": "accounts without login for 3 years", "table": "accounts",
    "identities": {"email": "email", "phone": "phone"},
    "older_than": {"column": "last_login_at", "fallback_column": "created_at", "period": "P3Y"},
}


def register(tmp_path: Path, *sweeps: dict[str, Any], system: int = 0, **entry: Any) -> Path:
    data: dict[str, Any] = demo_systems("sqlite:///site.db", "http://127.0.0.1:1")
    data["systems"][system].update(entry)
    if sweeps:
        data["systems"][system]["retention_sweeps"] = list(sweeps)
    path = tmp_path / "systems.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def refused(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_systems(path)
    assert str(path) in str(info.value)
    return str(info.value)


@pytest.mark.parametrize(("text", "period"), [
    ("P35D", relativedelta(days=35)), ("35d", relativedelta(days=35)), ("5w", relativedelta(weeks=5)),
    ("P3Y", relativedelta(years=3)), ("3y", relativedelta(years=3)),
    ("P1Y6M", relativedelta(years=1, months=6)),
])
def test_periods(text: str, period: relativedelta) -> None:
    assert parse_period(text) == period


@pytest.mark.parametrize("text", ["35", "P", "P0D", "0d", "35 days", "-3y", "PT35H"])
def test_what_is_not_a_period(text: str) -> None:
    with pytest.raises(ValueError, match="period"):
        parse_period(text)


def test_a_sweep_and_a_backup_retention_load(tmp_path: Path) -> None:
    loaded = load_systems(register(tmp_path, {**SWEEP, "where": {"status": "closed", "deleted_at": None},
                                              "systems": ["site-db", "brevo"]}))
    site = loaded.get("site-db")
    assert site.backup_retention == "P35D" and loaded.get("brevo").backup_retention is None
    [rule] = site.retention_sweeps
    assert (rule.name, rule.older_than.period, rule.where) == ("inactive-accounts", "P3Y",
                                                                {"status": "closed", "deleted_at": None})


def test_sql_text_is_not_read_from_the_file(tmp_path: Path) -> None:
    message = refused(register(tmp_path, {**SWEEP, "query": "DELETE FROM accounts"}))
    assert "systems[0].retention_sweeps[0].query" in message and "Extra inputs are not permitted" in message


@pytest.mark.parametrize(("change", "key"), [
    ({"table": "accounts; DROP TABLE accounts"}, "retention_sweeps[0].table"),
    ({"identities": {"email": "email) OR (1=1"}}, "retention_sweeps[0]"),
    ({"where": {"status = 'x' OR 1": 1}}, "retention_sweeps[0]"),
    ({"older_than": {"column": "last_login_at", "period": "three years"}},
     "retention_sweeps[0].older_than.period"),
    ({"older_than": {"column": "now()", "period": "P3Y"}}, "retention_sweeps[0].older_than.column"),
    ({"identities": {"nickname": "nick"}}, "retention_sweeps[0].identities.nickname"),
    ({"name": "Inactive Accounts"}, "retention_sweeps[0].name"),
    ({"systems": []}, "retention_sweeps[0]"),
])
def test_a_bad_rule_names_its_key(tmp_path: Path, change: dict[str, Any], key: str) -> None:
    message = refused(register(tmp_path, {**SWEEP, **change}))
    assert f"systems[0].{key}" in message


def test_only_sql_systems_are_swept(tmp_path: Path) -> None:
    message = refused(register(tmp_path, SWEEP, system=1))
    assert "systems[1].retention_sweeps[0]" in message and "'brevo'" in message


def test_rule_names_are_unique_in_the_register(tmp_path: Path) -> None:
    message = refused(register(tmp_path, SWEEP, {**SWEEP, "description": "again"}))
    assert "systems[0].retention_sweeps[1].name" in message and "systems[0].retention_sweeps[0]" in message


def test_a_sweep_scope_names_known_systems(tmp_path: Path) -> None:
    message = refused(register(tmp_path, {**SWEEP, "systems": ["mailjet"]}))
    assert "systems[0].retention_sweeps[0].systems" in message and "'mailjet'" in message


def test_backup_retention_is_a_period(tmp_path: Path) -> None:
    message = refused(register(tmp_path, backup_retention="a month"))
    assert "systems[0].backup_retention" in message and "P35D" in message


def test_sweep_request_ids_are_uuid4_shaped_stable_and_keyed() -> None:
    import re

    person = "sr_" + "a" * 32

    def derived(key: bytes = b"k" * 32, rule: str = "inactive-accounts", anchor: str = "2023-01-01") -> str:
        return sweep_request_id(key, "site-db", rule, person, anchor)

    assert re.fullmatch(UUID4_PATTERN, derived())
    assert derived() == derived(), "the same person under the same rule: the same request"
    assert derived() != derived(key=b"j" * 32), "keyed: nobody without the key can predict it"
    assert derived() != derived(anchor="2024-06-01"), "lapsed again after coming back: a new request"
    assert derived() != derived(rule="old-consents")
