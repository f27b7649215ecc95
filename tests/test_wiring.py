"""The composition root's errors name the file or the setting to fix."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipeline import wiring
from pipeline.devstack.demo import demo_systems
from pipeline.settings import Settings


def test_no_broker_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(wiring.SetupError, match="run `erasure up`, or set KAFKA_BOOTSTRAP_SERVERS"):
        wiring.bootstrap_servers(Settings(home_dir=tmp_path, kafka_bootstrap_servers=None))


def test_the_broker_file_of_erasure_up_is_read(tmp_path: Path) -> None:
    (tmp_path / "broker.json").write_text('{"bootstrap": "127.0.0.1:1234", "kind": "tansu"}')
    assert wiring.bootstrap_servers(Settings(home_dir=tmp_path, kafka_bootstrap_servers=None)) == (
        "127.0.0.1:1234")


def test_a_missing_register_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.yaml"
    with pytest.raises(wiring.SetupError, match=f"{missing}.*file not found"):
        wiring.systems_register(Settings(home_dir=tmp_path, systems_file=missing))


def test_an_unknown_connector_setting_names_the_register(tmp_path: Path) -> None:
    register = demo_systems("sqlite:///x.db", "http://127.0.0.1:1")
    register["systems"][1]["connector"]["api_key_env"] = "NOT_SET_ANYWHERE"  # type: ignore[index]
    path = tmp_path / "systems.yaml"
    path.write_text(yaml.safe_dump(register))
    settings = Settings(home_dir=tmp_path, systems_file=path)
    with pytest.raises(wiring.SetupError, match=f"{path}: .*NOT_SET_ANYWHERE"):
        wiring.build_connectors(settings, wiring.systems_register(settings), ["brevo"])


def test_a_webhook_needs_its_secret(tmp_path: Path) -> None:
    settings = Settings(home_dir=tmp_path, webhook_url="http://127.0.0.1:1/hook", webhook_secret=None)
    with pytest.raises(wiring.SetupError, match="ERASURE_WEBHOOK_SECRET"):
        wiring.check_webhook(settings)


def test_the_desk_secret_is_generated_once_and_private(tmp_path: Path) -> None:
    settings = Settings(home_dir=tmp_path / "home", desk_secret=None)
    first = wiring.desk_secret(settings)
    assert first == wiring.desk_secret(settings) and len(first) > 30
    assert (tmp_path / "home" / "desk.secret").stat().st_mode & 0o077 == 0
