"""systems.yaml errors fail at start-up naming the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from connectors.base import ConfigError
from pipeline.devstack.demo import demo_systems
from pipeline.register import load_systems


def write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "systems.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def demo() -> dict:  # type: ignore[type-arg]
    return demo_systems("sqlite:///site.db", "http://127.0.0.1:1")


def test_demo_register_is_valid(tmp_path: Path) -> None:
    register = load_systems(write(tmp_path, demo()))
    assert register.ids == ["site-db", "brevo"]


def test_unknown_key_names_file_and_key(tmp_path: Path) -> None:
    data = demo()
    data["systems"][1]["turnaround"] = 5
    path = write(tmp_path, data)
    with pytest.raises(ConfigError) as info:
        load_systems(path)
    assert str(path) in str(info.value) and "systems[1].turnaround" in str(info.value)


def test_unknown_connector_setting_names_the_key(tmp_path: Path) -> None:
    data = demo()
    data["systems"][1]["connector"]["api_key"] = "inline-secret"
    with pytest.raises(ConfigError) as info:
        load_systems(write(tmp_path, data))
    assert "systems[1].connector.api_key" in str(info.value)
    assert "inline-secret" not in str(info.value)


def test_bad_rule_names_the_table_rule(tmp_path: Path) -> None:
    data = demo()
    data["systems"][0]["connector"]["tables"][1]["action"] = "shred"
    with pytest.raises(ConfigError, match=r"systems\[0\]\.connector\.tables\[1\]\.action"):
        load_systems(write(tmp_path, data))


def test_unknown_connector_type(tmp_path: Path) -> None:
    data = demo()
    data["systems"][1]["connector"]["type"] = "sendinblue"
    with pytest.raises(ConfigError, match=r"systems\[1\]\.connector\.type.*sendinblue.*known: .*brevo"):
        load_systems(write(tmp_path, data))


def test_duplicate_system_id(tmp_path: Path) -> None:
    data = demo()
    data["systems"][1]["id"] = "site-db"
    with pytest.raises(ConfigError, match="duplicate system id 'site-db'"):
        load_systems(write(tmp_path, data))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_systems(tmp_path / "absent.yaml")


def test_hold_without_category_names_the_rule(tmp_path: Path) -> None:
    data = demo()
    rule = next(r for r in data["systems"][0]["connector"]["tables"] if r["action"] == "hold")
    index = data["systems"][0]["connector"]["tables"].index(rule)
    del rule["category"]
    with pytest.raises(ConfigError, match=rf"systems\[0\]\.connector\.tables\[{index}\].*needs 'category'"):
        load_systems(write(tmp_path, data))


def test_redis_rule_error_names_the_key(tmp_path: Path) -> None:
    data = demo_systems("sqlite:///site.db", "http://127.0.0.1:1", redis_url="redis://127.0.0.1:6379/0")
    data["systems"][2]["connector"]["rules"][0]["patern"] = "x:{email}"  # type: ignore[index]
    with pytest.raises(ConfigError, match=r"systems\[2\]\.connector\.rules\[0\]"):
        load_systems(write(tmp_path, data))
