"""The connector interface and its one error taxonomy.

A connector gets the person's identities (opened by the runtime) and the task's
context, erases, and returns what it did, or raises one of three errors:
retryable (with `retry_after_s` when the system said how long to wait),
permanent, or auth. Error messages name the system, never the person.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, ValidationError

from schemas import Evidence, Hold, Scope, SubjectIdentities
from schemas.codec import describe_config_error
from schemas.identity import IdentityType

if TYPE_CHECKING:
    from connectors.retention import RetentionPolicy

M = TypeVar("M", bound=BaseModel)

ResultStatus = Literal["erased", "not_found", "held", "pending", "manual"]


class ConnectorError(Exception):
    kind: Literal["retryable", "permanent", "auth"] = "permanent"

    def __init__(self, system: str, message: str) -> None:
        super().__init__(f"{system}: {message}")
        self.system = system
        self.message = message


class RetryableError(ConnectorError):
    kind = "retryable"

    def __init__(
        self, system: str, message: str, retry_after_s: float | None = None,
        http_status: int | None = None,
    ) -> None:
        super().__init__(system, message)
        self.retry_after_s = retry_after_s
        self.http_status = http_status


class PermanentError(ConnectorError):
    kind = "permanent"


class AuthError(ConnectorError):
    kind = "auth"


class ConfigError(Exception):
    """A system's configuration is wrong: the message names the file, the key or the variable."""


@dataclass(frozen=True)
class TaskContext:
    request_id: str
    system: str
    attempt: int
    scope: Scope | None = None
    job_ref: str | None = None
    received_at: datetime | None = None
    retention: RetentionPolicy | None = None
    release_categories: tuple[str, ...] | None = field(
        default=None, metadata={"doc": "Set on a release task: erase the data held for these categories"})


@dataclass(frozen=True)
class EraseResult:
    status: ResultStatus
    evidence: Evidence | None = None
    holds: list[Hold] = field(default_factory=list)
    job_ref: str | None = None
    poll_after_s: float | None = None


class Connector(Protocol):
    system: str

    def erase(self, subject: SubjectIdentities, context: TaskContext) -> EraseResult: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class BatchItem:
    """One task of a batch: the person's opened identities and the task's context."""

    subject: SubjectIdentities
    context: TaskContext


@runtime_checkable
class BatchConnector(Protocol):
    """A connector that erases many people in few calls or statements.

    `erase_batch` returns one entry per item, in order: the item's result, or the error that
    ends (or delays) that item alone. An error raised by `erase_batch` itself concerns every
    item of the batch (the bulk call as a whole was refused, throttled or failed). Batches are
    at most `max_batch` items; a batch of one must behave exactly like `erase`.
    """

    system: str
    max_batch: int

    def erase(self, subject: SubjectIdentities, context: TaskContext) -> EraseResult: ...

    def erase_batch(self, items: Sequence[BatchItem]) -> list[EraseResult | ConnectorError]: ...

    def close(self) -> None: ...


def identities_of(subject: SubjectIdentities, identity_type: IdentityType) -> list[str]:
    return [i.identity_value for i in subject.identities if i.identity_type == identity_type]


def require_secret(env_var: str, system: str, environ: dict[str, str] | None = None) -> str:
    """Read a secret from the environment; a missing one names the variable to set."""
    import os

    value = (environ if environ is not None else os.environ).get(env_var)
    if not value:
        raise ConfigError(
            f"system {system!r} needs the environment variable {env_var} "
            "(its secret is referenced by name in systems.yaml, never inlined): set it"
        )
    return value


# The name config loaders know; the one formatter is schemas.codec's.
describe_validation_error = describe_config_error


def load_yaml_model(path: Path, model: type[M]) -> M:
    """A YAML file validated by a strict model; errors name the file and the key, never values."""
    import yaml

    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(describe_config_error(exc, path)) from None
