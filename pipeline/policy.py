"""policy.yaml: loaded and validated strictly at start-up, errors naming the file and the key."""

from __future__ import annotations

from pathlib import Path

from connectors.base import ConfigError, load_yaml_model
from connectors.retention import RetentionPolicy
from pipeline.register import SystemsRegister

DEFAULT_POLICY = Path(__file__).parent / "defaults" / "policy.yaml"


def load_policy(path: Path | None) -> tuple[RetentionPolicy, Path]:
    source = path or DEFAULT_POLICY
    if not source.exists():
        raise ConfigError(f"{source}: file not found (set ERASURE_POLICY_FILE)")
    return load_yaml_model(source, RetentionPolicy), source


def check_register_against_policy(register: SystemsRegister, policy: RetentionPolicy,
                                  systems_file: Path, policy_file: Path) -> None:
    """Every category a system declares must be in the policy; every hold must have a rule."""
    for index, entry in enumerate(register.systems):
        for position, category in enumerate(entry.data_categories):
            if category not in policy.categories:
                raise ConfigError(
                    f"{systems_file}: key systems[{index}].data_categories[{position}]: data category "
                    f"{category!r} is not declared in {policy_file} (under 'categories')")
        for key, category in entry.hold_categories():
            if policy.rule(category) is None:
                raise ConfigError(
                    f"{systems_file}: key systems[{index}].connector.{key}: no retention rule for "
                    f"{category!r} in {policy_file}: a hold needs a rule naming its legal basis")
