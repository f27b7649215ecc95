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
