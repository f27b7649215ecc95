"""Pipeline events rebuilt from ledger rows: a system's task (re-drive, release, officer retry)
and a finished request's completion."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from schemas import ErasureCompleted, ErasureTask, Scope, SealedIdentities, SystemSummary


def task_for(request: Mapping[Any, Any], system: str, attempt: int, **extra: Any) -> ErasureTask:
    """A system's task rebuilt from the request's ledger row."""
    return ErasureTask(
        request_id=request["request_id"], system=system, attempt=attempt,
        received_at=request["received_at"], due_at=request["due_at"], subject_ref=request["subject_ref"],
        identities=SealedIdentities.model_validate_json(request["sealed_identities"]),
        scope=Scope.model_validate_json(request["scope"]) if request["scope"] else None, **extra)


def completion_event(request: Mapping[Any, Any], systems: Sequence[Mapping[Any, Any]]) -> ErasureCompleted:
    """The `ErasureCompleted` of a finished request, from its ledger rows."""
    return ErasureCompleted(
        request_id=request["request_id"], status=request["status"],
        systems=[SystemSummary(system=s["system"], status=s["status"], attempt=s["attempt"])
                 for s in sorted(systems, key=lambda s: s["system"])],
        received_at=request["received_at"], due_at=request["due_at"],
        completed_at=request["completed_at"], on_time=bool(request["on_time"]),
    )
