"""systems.yaml: the register of every system holding personal data (Art. 30 / Art. 19).

Validated strictly at start-up: an unknown key, a wrong type or an unknown
connector type fails with the file and the key path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from connectors.base import ConfigError, describe_validation_error, load_yaml_model
from connectors.pacing import RateLimit
from connectors.registry import connector_types, settings_model
from pipeline.sweep.rules import RetentionSweep, parse_period
from schemas.models import SYSTEM_ID_PATTERN


class ConnectorSpec(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    type: str


class SystemEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=SYSTEM_ID_PATTERN)
    kind: Literal["processor", "internal"]
    name: str | None = Field(default=None, min_length=1, max_length=100,
                             description="The name the person knows it by (letters, Art. 19); else the id")
    connector: ConnectorSpec
    data_categories: list[str] = Field(min_length=1)
    location: str
    contract: str | None = None
    expected_turnaround_s: float = Field(default=60.0, gt=0)
    # Overrides the processor's published limit (connectors.pacing) for this account's plan.
    rate_limit: RateLimit | None = None

    backup_retention: str | None = Field(
        default=None, description="How long backups of this system are kept (P35D or 35d): the ledger "
        "keeps keyed digests of the people erased from it that long, for `erasure replay` after a restore")
    retention_sweeps: list[RetentionSweep] = Field(
        default_factory=list, description="sql systems: rules whose people `erasure sweep` erases")

    @field_validator("backup_retention")
    @classmethod
    def _period(cls, value: str | None) -> str | None:
        if value is not None:
            parse_period(value)
        return value

    def connector_settings(self) -> BaseModel:
        extra = dict(self.connector.model_extra or {})
        return settings_model(self.connector.type).model_validate(extra)

    def hold_categories(self) -> list[tuple[str, str]]:
        """(key path, category) of every hold the connector's settings declare."""
        declared = getattr(self.connector_settings(), "hold_categories", None)
        return list(declared()) if callable(declared) else []


class SystemsRegister(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    systems: list[SystemEntry] = Field(min_length=1)

    def get(self, system_id: str) -> SystemEntry:
        for entry in self.systems:
            if entry.id == system_id:
                return entry
        known = ", ".join(e.id for e in self.systems)
        raise ConfigError(f"no system {system_id!r} in the register (known: {known})")

    @property
    def ids(self) -> list[str]:
        return [e.id for e in self.systems]


def load_systems(path: Path) -> SystemsRegister:
    if not path.exists():
        raise ConfigError(f"{path}: file not found (set ERASURE_SYSTEMS_FILE or run `erasure up`)")
    register = load_yaml_model(path, SystemsRegister)
    seen: set[str] = set()
    for index, entry in enumerate(register.systems):
        where = f"systems[{index}]"
        if entry.id in seen:
            raise ConfigError(f"{path}: key {where}.id: duplicate system id {entry.id!r}")
        seen.add(entry.id)
        if entry.connector.type not in connector_types():
            known = ", ".join(sorted(connector_types()))
            raise ConfigError(
                f"{path}: key {where}.connector.type: unknown connector type "
                f"{entry.connector.type!r} (known: {known})"
            )
        try:
            entry.connector_settings()
        except ValidationError as exc:
            raise ConfigError(describe_validation_error(exc, path, f"{where}.connector")) from None
    check_sweeps(register, path)
    return register


def check_sweeps(register: SystemsRegister, path: Path) -> None:
    """Sweeps read the site's own SQL stores, under names unique in the register, naming known systems."""
    names: dict[str, str] = {}
    for index, entry in enumerate(register.systems):
        for position, sweep in enumerate(entry.retention_sweeps):
            where = f"systems[{index}].retention_sweeps[{position}]"
            if entry.connector.type != "sql":
                raise ConfigError(f"{path}: key {where}: retention sweeps read an internal SQL store; "
                                  f"system {entry.id!r} has connector type {entry.connector.type!r}")
            if sweep.name in names:
                raise ConfigError(f"{path}: key {where}.name: {sweep.name!r} is already the name of a "
                                  f"sweep at {names[sweep.name]}: `erasure sweep --rule` needs one each")
            names[sweep.name] = where
            unknown = [s for s in sweep.systems or [] if s not in register.ids]
            if unknown:
                raise ConfigError(f"{path}: key {where}.systems: no system {unknown[0]!r} in the register "
                                  f"(known: {', '.join(register.ids)})")
