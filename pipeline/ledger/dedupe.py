"""The dedupe key of every ledger event, built here only.

An event is recorded once per key (a unique column), so these strings are what makes a
replayed or duplicated message change nothing. They are part of the hash chain: never
change an existing spelling.
"""

from __future__ import annotations

from schemas import ErasureOutcome, ErasurePlanned


def planned(request_id: str) -> str:
    return f"{request_id}:planned"


def outcome(request_id: str, system: str, attempt: int, status: str, release: bool = False) -> str:
    """A system's report for one attempt; the outcome of a release task is told apart."""
    return f"{request_id}:{system}:{attempt}:{status}" + (":release" if release else "")


def of_event(event: ErasurePlanned | ErasureOutcome) -> str:
    if isinstance(event, ErasurePlanned):
        return planned(event.request_id)
    return outcome(event.request_id, event.system, event.attempt, event.status,
                   release=event.purpose == "release")


def completion(request_id: str, reopened: int) -> str:
    """A request completes once, and once more after each officer retry reopened it."""
    return f"{request_id}:completed" if not reopened else f"{request_id}:completed:{reopened}"


def redriven(request_id: str, system: str, attempt: int) -> str:
    return f"{request_id}:{system}:{attempt}:redriven"


def release_requested(request_id: str, system: str, attempt: int) -> str:
    return f"{request_id}:{system}:{attempt}:release_requested"


def data_key_destroyed(request_id: str) -> str:
    return f"{request_id}:data_key_destroyed"


def officer_retry(request_id: str, system: str, attempt: int) -> str:
    return f"{request_id}:{system}:{attempt}:officer_retry"


def manual_confirmed(request_id: str, system: str, attempt: int, status: str) -> str:
    """An officer's confirmation, recorded next to the outcome it stands for."""
    return outcome(request_id, system, attempt, status) + ":confirmed"


def deadline_extended(request_id: str, total_months: int) -> str:
    return f"{request_id}:extended:{total_months}"


def refused(request_id: str) -> str:
    """An officer's refusal (Art. 12(4)): once per request."""
    return f"{request_id}:refused"
