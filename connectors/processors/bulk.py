"""What the bulk processor connectors (Segment, Mixpanel, SendGrid) share for `erase_batch`.

A batch mixes fresh tasks (submitted together in one bulk call per `pack`) and tasks that
poll a job (one status call per distinct job, however many tasks share it). A call's
failure belongs to the items that call concerns (`Calls`); when one and the same error
ends every item, the batch as a whole failed and `settle` raises it, so a throttled bulk
call raises `RetryableError` and a batch of one behaves like `erase`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from connectors.base import BatchItem, ConnectorError, EraseResult, PermanentError
from schemas import Evidence, SubjectIdentities

T = TypeVar("T")
Outcome = EraseResult | ConnectorError


class Calls:
    """Runs a batch's calls. A permanent error stays with its call's items; a throttle, an auth
    failure or a transport error stops the calls not yet made (they would meet the same), and
    their items get that error."""

    def __init__(self) -> None:
        self.stopped: ConnectorError | None = None

    def run(self, call: Callable[[], T]) -> T | ConnectorError:
        if self.stopped is not None:
            return self.stopped
        try:
            return call()
        except PermanentError as exc:
            return exc
        except ConnectorError as exc:
            self.stopped = exc
            return exc


def by_job(items: Sequence[BatchItem]) -> dict[str, list[int]]:
    """The indices of the items that poll a job, by job reference (first-seen order)."""
    jobs: dict[str, list[int]] = {}
    for index, item in enumerate(items):
        if item.context.job_ref:
            jobs.setdefault(item.context.job_ref, []).append(index)
    return jobs


def fresh(system: str, items: Sequence[BatchItem], outcomes: list[Outcome | None],
          ids_of: Callable[[SubjectIdentities], list[str]], max_ids: int,
          what: str) -> list[tuple[int, list[str]]]:
    """The items with no job to poll, and the ids to submit for each. An item with none is
    not_found, one with more than `max_ids` (`what`: "distinct ids in one task") fails: both
    answered in `outcomes` and left out."""
    submit: list[tuple[int, list[str]]] = []
    for index, item in enumerate(items):
        if item.context.job_ref:
            continue
        ids = ids_of(item.subject)
        if not ids:  # nothing this connector can name
            outcomes[index] = EraseResult(status="not_found", evidence=Evidence(records_affected=0))
        elif len(ids) > max_ids:
            outcomes[index] = PermanentError(system, f"more than {max_ids} {what}")
        else:
            submit.append((index, ids))
    return submit


def pack(sizes: Sequence[tuple[int, int]], max_ids: int) -> list[list[int]]:
    """(index, id count) pairs grouped in order so that no group holds more than `max_ids` ids:
    one bulk call per group. Every count is at most `max_ids` (a larger one is refused before)."""
    groups: list[list[int]] = []
    used = max_ids
    for index, count in sizes:
        if used + count > max_ids:
            groups.append([])
            used = 0
        groups[-1].append(index)
        used += count
    return groups


def settle(system: str, outcomes: Sequence[Outcome | None]) -> list[Outcome]:
    """Every item's outcome; one error shared by every item is the batch's own: raised."""
    done = [o if o is not None else PermanentError(system, "no outcome for a task of the batch (a bug)")
            for o in outcomes]
    if done and isinstance(done[0], ConnectorError) and all(o is done[0] for o in done):
        raise done[0]
    return done


def one(outcomes: Sequence[Outcome]) -> EraseResult:
    """The outcome of a batch of one, as `erase` gives it: a result, or the error raised."""
    outcome = outcomes[0]
    if isinstance(outcome, ConnectorError):
        raise outcome
    return outcome
