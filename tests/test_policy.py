"""policy.yaml: French defaults, strict validation naming file and key, retain_until arithmetic."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import yaml

from connectors.base import ConfigError
from pipeline.devstack.demo import demo_systems
from pipeline.policy import DEFAULT_POLICY, check_register_against_policy, load_policy
from pipeline.register import SystemsRegister, load_systems

RECEIVED = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


def default_raw() -> dict:  # type: ignore[type-arg]
    return yaml.safe_load(DEFAULT_POLICY.read_text())


def write(tmp_path: Path, data: object, name: str = "policy.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path


def test_french_defaults() -> None:
    policy, _ = load_policy(None)
    expected = {"invoices": ("P10Y", "L123-22"), "accounting_records": ("P10Y", "L123-22"),
                "tax_records": ("P6Y", "L102 B"), "dispute_evidence": ("P5Y", "2224"),
                "card_data": ("P13M", "2018-303")}
    for category, (duration, cited) in expected.items():
        rule = policy.rule(category)
        assert rule is not None and rule.duration == duration and cited in rule.citation
    fraud = policy.rule("fraud_signals")
    assert fraud is not None and "site" in fraud.citation.lower(), "no invented legal citation"


def test_retain_until_by_clock() -> None:
    policy, _ = load_policy(None)
    # Invoices: ten years from the end of the financial year the invoice falls in.
    assert policy.retain_until("invoices", RECEIVED, date(2025, 3, 14)) == datetime(
        2035, 12, 31, 23, 59, 59, tzinfo=UTC)
    # Card data: thirteen months from the debit.
    assert policy.retain_until("card_data", RECEIVED, datetime(2026, 1, 31, 8, 0)) == datetime(
        2027, 2, 28, 8, 0, tzinfo=UTC)
    # Fraud signals: from the request itself.
    assert policy.retain_until("fraud_signals", RECEIVED) == datetime(2027, 11, 26, 10, 0, tzinfo=UTC)


def test_unknown_category_names_file_and_key(tmp_path: Path) -> None:
    data = default_raw()
    data["rules"][2]["category"] = "tax"
    path = write(tmp_path, data)
    with pytest.raises(ConfigError) as info:
        load_policy(path)
    assert str(path) in str(info.value) and "rules[2].category" in str(info.value)
    assert "'tax'" in str(info.value)


@pytest.mark.parametrize("duration", ["10 years", "P", "P10", "10Y", "PT5M"])
def test_malformed_duration_names_file_and_key(tmp_path: Path, duration: str) -> None:
    data = default_raw()
    data["rules"][0]["duration"] = duration
    path = write(tmp_path, data)
    with pytest.raises(ConfigError) as info:
        load_policy(path)
    assert str(path) in str(info.value) and "rules[0].duration" in str(info.value)


def test_unknown_key_and_clock(tmp_path: Path) -> None:
    data = default_raw()
    data["rules"][1]["starts"] = "invoice date"
    data["rules"][3]["clock"] = "whenever"
    with pytest.raises(ConfigError) as info:
        load_policy(write(tmp_path, data))
    assert "rules[1].starts" in str(info.value) and "rules[3].clock" in str(info.value)


def test_register_categories_must_be_in_the_policy(tmp_path: Path) -> None:
    policy, source = load_policy(None)
    raw = demo_systems("sqlite:///x.db", "http://127.0.0.1:1")
    raw["systems"][1]["data_categories"].append("biometrics")  # type: ignore[index]
    with pytest.raises(ConfigError, match=r"systems\[1\]\.data_categories\[2\].*'biometrics'"):
        check_register_against_policy(SystemsRegister.model_validate(raw), policy, Path("s.yaml"), source)


def test_a_hold_needs_a_rule(tmp_path: Path) -> None:
    data = default_raw()
    data["rules"] = [r for r in data["rules"] if r["category"] != "card_data"]
    policy, source = load_policy(write(tmp_path, data))
    register = load_systems(write(tmp_path, demo_systems("sqlite:///x.db", "http://127.0.0.1:1"),
                                  "systems.yaml"))
    with pytest.raises(ConfigError) as info:
        check_register_against_policy(register, policy, tmp_path / "systems.yaml", source)
    assert "systems[0].connector.tables[6].category" in str(info.value)
    assert "'card_data'" in str(info.value) and str(source) in str(info.value)


def test_worker_refuses_to_start_on_a_bad_policy(tmp_path: Path) -> None:
    data = default_raw()
    data["rules"][0]["duration"] = "ten years"
    policy = write(tmp_path, data)
    systems = write(tmp_path, demo_systems("sqlite:///x.db", "http://127.0.0.1:1"), "systems.yaml")
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "worker"], capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "ERASURE_POLICY_FILE": str(policy),
             "ERASURE_SYSTEMS_FILE": str(systems), "ERASURE_HOME_DIR": str(tmp_path)})
    assert result.returncode != 0
    assert str(policy) in result.stderr and "rules[0].duration" in result.stderr
