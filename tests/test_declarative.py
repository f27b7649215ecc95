"""Specs of declared connectors fail at start-up naming the file and the key."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from connectors.base import ConfigError
from connectors.processors.declarative import SPEC_DIR, extract, load_spec
from pipeline.register import load_systems


def spec_copy(tmp_path: Path, name: str = "intercom") -> tuple[dict, Path]:  # type: ignore[type-arg]
    raw = yaml.safe_load((SPEC_DIR / f"{name}.yaml").read_text())
    return raw, tmp_path / f"{name}.yaml"


def test_shipped_specs_load() -> None:
    for path in SPEC_DIR.glob("*.yaml"):
        assert load_spec(path).name == path.stem


def test_unknown_key_names_file_and_key(tmp_path: Path) -> None:
    raw, path = spec_copy(tmp_path)
    raw["erase"]["statuz"] = {404: "not_found"}
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as info:
        load_spec(path)
    assert str(path) in str(info.value) and "erase.statuz" in str(info.value)


def test_bad_status_meaning_names_the_status(tmp_path: Path) -> None:
    raw, path = spec_copy(tmp_path)
    raw["erase"]["statuses"] = {200: "gone"}
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"key erase\.statuses\[200\]"):
        load_spec(path)


def test_auth_secret_must_be_declared(tmp_path: Path) -> None:
    raw, path = spec_copy(tmp_path)
    raw["secrets"] = []
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="auth uses secret 'token', which 'secrets' does not declare"):
        load_spec(path)


def test_systems_yaml_must_name_every_secret_of_the_spec(tmp_path: Path) -> None:
    systems = tmp_path / "systems.yaml"
    systems.write_text(yaml.safe_dump({"systems": [{
        "id": "intercom", "kind": "processor", "location": "EU", "data_categories": ["support"],
        "connector": {"type": "intercom", "secrets": {"tokn": "INTERCOM_TOKEN"}}}]}))
    with pytest.raises(ConfigError) as info:
        load_systems(systems)
    assert str(systems) in str(info.value) and "secrets.tokn" in str(info.value)


def test_extract_paths() -> None:
    document = {"data": [{"id": "a"}, {"id": "b"}], "results": {"task_id": "t"}}
    assert extract(document, "data[*].id") == ["a", "b"]
    assert extract(document, "results.task_id") == ["t"]
    assert extract([{"user_id": "auth0|1"}], "[*].user_id") == ["auth0|1"]
    assert extract(None, "data[*].id") == []


@pytest.mark.parametrize(("outcome", "complaint"), [
    ({"assurance": "accepted"}, "completes_within"),
    ({"assurance": "confirmed", "completes_within": "P7D"}, "completes_within"),
    ({"assurance": "probably", "completes_within": "P7D"}, "outcome.assurance"),
    ({"assurance": "accepted", "completes_within": "P7D", "residual": [{"what": "x", "for": "a week"}]},
     "outcome.residual"),
    ({"assurance": "accepted", "completes_within": "-P7D"}, "positive"),
    ({"assurance": "accepted", "completes_within": "P7D", "residual": [{"for": "P7D"}]}, "what"),
])
def test_outcome_section_is_strict(tmp_path: Path, outcome: dict, complaint: str) -> None:  # type: ignore[type-arg]
    raw, path = spec_copy(tmp_path)
    raw["outcome"] = outcome
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=complaint):
        load_spec(path)


def test_shipped_outcome_sections() -> None:
    mailjet, intercom = load_spec(SPEC_DIR / "mailjet.yaml"), load_spec(SPEC_DIR / "intercom.yaml")
    assert mailjet.outcome and mailjet.outcome.completes_within == timedelta(days=30)
    assert intercom.outcome and intercom.outcome.assurance == "accepted"
    assert intercom.outcome.completes_within == timedelta(days=7)
