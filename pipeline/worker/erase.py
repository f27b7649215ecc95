"""One task to its outcome: open the identities, call the connector, classify what happened.

Transient errors are retried in process while the wait is short
(`connectors.http.call_with_retries`); one that outlasts them re-queues the task
with the next attempt number and a `not_before` from the re-queue policy, where a
wait the processor announced wins. A pending erasure (a processor job) is
re-queued with its job reference to be polled. Everything else ends the task:
erased, not found, held, manual, or failed with the error's kind.

A batch connector erases many tasks in one call (`erase_batch`): each task's entry
is classified the same way; an error of the call itself concerns every task. The
batch's data keys come from one ledger lookup (`data_keys`), not one per task.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from connectors.base import (
    BatchConnector,
    BatchItem,
    Connector,
    ConnectorError,
    EraseResult,
    RetryableError,
    TaskContext,
)
from connectors.http import call_with_retries
from connectors.retention import RetentionPolicy
from connectors.retry import RetryPolicy
from pipeline.codec import now_utc
from pipeline.crypto import SealError, open_with_data_key
from pipeline.settings import Settings
from schemas import ErasureOutcome, ErasureTask, OutcomeError, SubjectIdentities
from schemas.models import ErrorKind, SystemStatus

log = logging.getLogger(__name__)
T = TypeVar("T")

# A processor job that did not say when to look again is polled after a minute.
DEFAULT_POLL_AFTER_S = 60.0
# Our own backoff before attempt n+1 is jittered up to 2^(n+2) s: 8 s after the first attempt.
REQUEUE_BASE_S = 8.0
MESSAGE_MAX_CHARS = 500


def requeue_policy(settings: Settings) -> RetryPolicy:
    """When a task that failed transiently comes back, and how many attempts it gets."""
    return RetryPolicy(
        max_attempts=settings.retry_max_attempts, base_s=REQUEUE_BASE_S, multiplier=2.0,
        cap_s=settings.retry_backoff_cap_s, jitter=True,
        announced_cap_s=settings.retry_announced_wait_cap_s,
    )


@dataclass(frozen=True)
class InProcessRetries:
    """Retries inside one attempt, for waits short enough to hold a worker thread."""

    attempts: int
    max_wait_s: float
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> InProcessRetries:
        return cls(settings.retry_in_process_attempts, settings.retry_in_process_max_wait_s)


@dataclass(frozen=True)
class Handled:
    """What to publish for one task: its outcome, and the task again when it comes back later."""

    outcome: ErasureOutcome
    requeue: ErasureTask | None = None


class CannotOpen(Exception):
    """The task's identities cannot be opened: the data key is gone or the envelope is bad."""


DataKey = Callable[[str], bytes | None]
# Many requests' data keys in one lookup (`KeyStore.data_keys`): None for a key missing or destroyed.
DataKeys = Callable[[list[str]], Mapping[str, bytes | None]]


class TaskEraser:
    """Erases one task at one system; safe to call from many threads at once.

    `data_keys` opens a batch's identities with one lookup; without it, `data_key` is asked per task.
    """

    def __init__(self, system: str, connector: Connector, data_key: DataKey,
                 requeue: RetryPolicy, in_process: InProcessRetries,
                 retention: RetentionPolicy | None = None,
                 clock: Callable[[], datetime] = now_utc, data_keys: DataKeys | None = None) -> None:
        self.system = system
        self.connector = connector
        self.data_key = data_key
        self.data_keys: DataKeys = data_keys or (lambda ids: {rid: data_key(rid) for rid in ids})
        self.requeue = requeue
        self.in_process = in_process
        self.retention = retention
        self.clock = clock

    def keys_of(self, tasks: Sequence[ErasureTask]) -> Mapping[str, bytes | None]:
        """The tasks' data keys in one lookup (None for a key missing or destroyed)."""
        return self.data_keys(list(dict.fromkeys(task.request_id for task in tasks)))

    def erase(self, task: ErasureTask, keys: Mapping[str, bytes | None] | None = None) -> Handled:
        """`keys`: the data keys already looked up for this task and others (`keys_of`)."""
        key = keys.get(task.request_id) if keys is not None else self.data_key(task.request_id)
        try:
            subject = self._open(task, key)
        except CannotOpen as exc:
            return self._failed(task, "permanent", str(exc))
        return self._classify(task, self._answer(lambda: self.connector.erase(subject, self._context(task))))

    def erase_batch(self, tasks: Sequence[ErasureTask]) -> list[Handled]:
        """Erase the tasks in one call of a batch connector; one Handled per task, in order.

        A task whose identities cannot be opened fails alone; the others go in the batch."""
        handled: dict[int, Handled] = {}
        items: list[tuple[int, BatchItem]] = []
        keys = self.keys_of(tasks)
        for index, task in enumerate(tasks):
            try:
                items.append((index, BatchItem(self._open(task, keys.get(task.request_id)),
                                               self._context(task))))
            except CannotOpen as exc:
                handled[index] = self._failed(task, "permanent", str(exc))
        if items:
            answers = self._batch_answers([item for _, item in items])
            for (index, _), answer in zip(items, answers, strict=True):
                handled[index] = self._classify(tasks[index], answer)
        return [handled[index] for index in range(len(tasks))]

    def _batch_answers(self, items: list[BatchItem]) -> list[EraseResult | Exception]:
        """One answer per item; what the call itself raised (after the in-process retries) is each one's."""
        connector = self.connector
        if not isinstance(connector, BatchConnector):
            raise TypeError(f"{self.system}: the connector does not erase in batches")
        answer = self._answer(lambda: connector.erase_batch(items))
        if isinstance(answer, Exception):
            return [answer] * len(items)
        if len(answer) != len(items):  # a connector bug: no entry can be trusted to be its task's
            log.error("%s: erase_batch answered %d entries for %d tasks", self.system, len(answer),
                      len(items))
            return [ConnectorError(self.system, "the batch answer did not match its tasks")] * len(items)
        entries: list[EraseResult | Exception] = list(answer)
        return entries

    def _answer(self, call: Callable[[], T]) -> T | Exception:
        """The call's value after the in-process retries, or the error it ended with."""
        try:
            return call_with_retries(
                call, attempts=self.in_process.attempts, max_wait_s=self.in_process.max_wait_s,
                backoff_cap_s=self.in_process.max_wait_s, sleep=self.in_process.sleep)
        except Exception as exc:
            return exc

    def _classify(self, task: ErasureTask, answer: EraseResult | Exception) -> Handled:
        if isinstance(answer, EraseResult):
            return self._finished(task, answer)
        if isinstance(answer, RetryableError):
            return self._retry_later(task, answer)
        if isinstance(answer, ConnectorError):
            return self._failed(task, answer.kind, str(answer))
        # A connector bug fails the task, it does not stop the worker (the message names no value).
        log.error("%s: connector raised %s", self.system, type(answer).__name__)
        return self._failed(task, "permanent", f"{self.system}: unexpected {type(answer).__name__}")

    def _open(self, task: ErasureTask, key: bytes | None) -> SubjectIdentities:
        if key is None:
            raise CannotOpen("the request's data key is missing or destroyed")
        try:
            return open_with_data_key(key, task.identities)
        except SealError as exc:
            raise CannotOpen(str(exc)) from None

    def _context(self, task: ErasureTask) -> TaskContext:
        return TaskContext(
            request_id=task.request_id, system=self.system, attempt=task.attempt, scope=task.scope,
            job_ref=task.job_ref, received_at=task.received_at, retention=self.retention,
            release_categories=tuple(task.release_categories or ()) if task.purpose == "release"
            else None)

    def _finished(self, task: ErasureTask, result: EraseResult) -> Handled:
        if result.status != "pending":
            return Handled(self._outcome(task, result.status, holds=result.holds,
                                         evidence=result.evidence))
        poll_at = self.clock() + timedelta(seconds=result.poll_after_s or DEFAULT_POLL_AFTER_S)
        outcome = self._outcome(task, "pending", holds=result.holds, evidence=result.evidence,
                                next_attempt_at=poll_at)
        return Handled(outcome, task.model_copy(update={
            "attempt": task.attempt + 1, "not_before": poll_at, "job_ref": result.job_ref}))

    def _retry_later(self, task: ErasureTask, exc: RetryableError) -> Handled:
        if self.requeue.exhausted(task.attempt):
            return self._failed(task, "retryable", f"{exc} (retry budget of "
                                f"{self.requeue.max_attempts} attempts spent)")
        now = self.clock()
        wait_s = self.requeue.wait_s(task.attempt, exc.retry_after_s)
        next_at = now + timedelta(seconds=wait_s)
        error = OutcomeError(kind="retryable", message=str(exc)[:MESSAGE_MAX_CHARS], retry_after_s=wait_s)
        outcome = self._outcome(task, "retrying", occurred_at=now, next_attempt_at=next_at, error=error)
        return Handled(outcome, task.model_copy(update={"attempt": task.attempt + 1, "not_before": next_at}))

    def _failed(self, task: ErasureTask, kind: ErrorKind, message: str) -> Handled:
        return Handled(self._outcome(task, "failed", error=OutcomeError(
            kind=kind, message=message[:MESSAGE_MAX_CHARS])))

    def _outcome(self, task: ErasureTask, status: SystemStatus, **fields: Any) -> ErasureOutcome:
        fields.setdefault("occurred_at", self.clock())
        return ErasureOutcome(request_id=task.request_id, system=self.system, attempt=task.attempt,
                              purpose=task.purpose, status=status, **fields)
