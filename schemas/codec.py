"""Events to bytes and back, and the one description of a validation error.

A validation error is described by where it is (the field path) and what is
wrong (pydantic's message), never by the value it saw: values may be personal
data, and descriptions end up in logs, dead letters and HTTP answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


def encode(event: BaseModel) -> bytes:
    return event.model_dump_json(exclude_none=True).encode("utf-8")


def decode(model: type[M], data: bytes | str) -> M:
    """The event in `data`; raises `ValidationError` (describe it with `describe_invalid`)."""
    return model.model_validate_json(data)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a document: where, what, and pydantic's error type. No value."""

    loc: tuple[int | str, ...]
    msg: str
    type: str


def problems(exc: ValidationError) -> list[Problem]:
    """Every problem of `exc`, stripped of the input values and documentation links."""
    return [Problem(loc=tuple(error["loc"]), msg=error["msg"], type=error["type"])
            for error in exc.errors(include_input=False, include_url=False, include_context=False)]


def describe_invalid(exc: ValidationError, limit: int = 5) -> str:
    """One line for an invalid event (dead letters, logs): its first `limit` problems."""
    found = problems(exc)
    parts = [f"{'.'.join(str(p) for p in problem.loc) or '(event)'}: {problem.msg}"
             for problem in found[:limit]]
    more = len(found) - limit
    if more > 0:
        parts.append(f"... and {more} more")
    return f"invalid {exc.title}: " + "; ".join(parts)


def key_path(loc: Sequence[int | str], prefix: str = "") -> str:
    """A key as a config file's author writes it: `systems[2].connector.base_url`."""
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "(top level)"


def describe_config_error(exc: ValidationError, source: Path | str, prefix: str = "") -> str:
    """One line per problem of a config file, naming the file and the key."""
    lines = [f"{source}: invalid configuration"]
    lines.extend(f"  {source}: key {key_path(problem.loc, prefix)}: {problem.msg}"
                 for problem in problems(exc))
    return "\n".join(lines)


def problem_details(exc: ValidationError, loc_prefix: Sequence[int | str] = ()) -> list[dict[str, Any]]:
    """The problems as JSON objects (an HTTP 422 `detail`), each `loc` under `loc_prefix`."""
    return [{"loc": [*loc_prefix, *problem.loc], "msg": problem.msg, "type": problem.type}
            for problem in problems(exc)]
