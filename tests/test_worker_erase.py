"""One task to its outcome: retries in process, re-queues honouring announced waits, budget, pending jobs."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from connectors.base import AuthError, EraseResult, PermanentError, RetryableError
from connectors.retry import RetryPolicy
from pipeline.crypto import new_data_key
from pipeline.settings import Settings
from pipeline.worker.erase import InProcessRetries, TaskEraser, requeue_policy
from schemas import Evidence
from tests.worker_fakes import EMAIL, NOW, PERSON, Keys, ScriptedConnector, sealed_task

SETTINGS = Settings(retry_max_attempts=4, retry_backoff_cap_s=300.0, retry_announced_wait_cap_s=7200.0,
                    retry_in_process_attempts=3, retry_in_process_max_wait_s=5.0)
EVIDENCE = Evidence(reference="del-1", http_status=200, records_affected=1)


@pytest.fixture
def keys() -> Keys:
    return Keys()


def eraser(connector: ScriptedConnector, keys: Keys, slept: list[float] | None = None) -> TaskEraser:
    sleep = (slept.append if slept is not None else lambda _: None)
    return TaskEraser("crm", connector, keys, requeue_policy(SETTINGS),
                      dataclasses.replace(InProcessRetries.from_settings(SETTINGS), sleep=sleep),
                      clock=lambda: NOW)


def test_erased_outcome_from_the_opened_identities(keys: Keys) -> None:
    connector = ScriptedConnector(EraseResult("erased", evidence=EVIDENCE))
    task = sealed_task(keys.key, attempt=2)
    handled = eraser(connector, keys).erase(task)
    assert handled.requeue is None
    outcome = handled.outcome
    assert (outcome.status, outcome.attempt, outcome.system) == ("erased", 2, "crm")
    assert outcome.evidence == EVIDENCE
    assert outcome.occurred_at == NOW and outcome.error is None
    subject, context = connector.calls[0]
    assert subject == PERSON
    assert (context.request_id, context.attempt, context.release_categories) == (task.request_id, 2, None)


def test_release_task_names_its_categories(keys: Keys) -> None:
    connector = ScriptedConnector(EraseResult("erased"))
    task = sealed_task(keys.key, purpose="release", release_categories=["invoices"])
    handled = eraser(connector, keys).erase(task)
    assert handled.outcome.purpose == "release"
    assert connector.calls[0][1].release_categories == ("invoices",)


def test_a_short_transient_error_is_retried_in_process(keys: Keys) -> None:
    slept: list[float] = []
    connector = ScriptedConnector(RetryableError("crm", "busy", retry_after_s=2.0), EraseResult("erased"))
    handled = eraser(connector, keys, slept).erase(sealed_task(keys.key))
    assert handled.outcome.status == "erased" and handled.requeue is None
    assert len(connector.calls) == 2 and slept == [2.0]


def test_an_announced_long_wait_requeues_with_not_before(keys: Keys) -> None:
    connector = ScriptedConnector(RetryableError("crm", "rate limited", retry_after_s=3600.0))
    task = sealed_task(keys.key, attempt=1)
    handled = eraser(connector, keys).erase(task)
    assert len(connector.calls) == 1  # too long to wait in process
    due = NOW + timedelta(seconds=3600)
    outcome = handled.outcome
    assert outcome.status == "retrying" and outcome.next_attempt_at == due
    assert outcome.error is not None and outcome.error.retry_after_s == 3600.0
    assert outcome.error.kind == "retryable" and outcome.attempt == 1
    assert handled.requeue is not None
    assert (handled.requeue.attempt, handled.requeue.not_before) == (2, due)
    assert handled.requeue.identities == task.identities  # still sealed


def test_an_announced_wait_is_capped(keys: Keys) -> None:
    connector = ScriptedConnector(RetryableError("crm", "daily quota spent", retry_after_s=86400.0))
    handled = eraser(connector, keys).erase(sealed_task(keys.key))
    assert handled.requeue is not None
    assert handled.requeue.not_before == NOW + timedelta(seconds=SETTINGS.retry_announced_wait_cap_s)


def test_without_an_announced_wait_our_backoff_applies(keys: Keys) -> None:
    connector = ScriptedConnector(RetryableError("crm", "503"))
    handled = eraser(connector, keys).erase(sealed_task(keys.key, attempt=2))
    assert handled.requeue is not None and handled.requeue.not_before is not None
    assert NOW <= handled.requeue.not_before <= NOW + timedelta(seconds=16)
    assert len(connector.calls) == SETTINGS.retry_in_process_attempts


def test_requeue_policy_waits_as_before() -> None:
    """Our own wait after attempt n is jittered up to 2^(n+2) s, capped; the budget and caps from settings."""
    policy = requeue_policy(SETTINGS)
    assert (policy.max_attempts, policy.announced_cap_s, policy.jitter) == (4, 7200.0, True)
    ceiling = dataclasses.replace(policy, jitter=False)
    assert [ceiling.backoff_s(n) for n in range(1, 9)] == [8, 16, 32, 64, 128, 256, 300, 300]
    assert isinstance(policy, RetryPolicy)


def test_a_spent_budget_fails_the_task(keys: Keys) -> None:
    connector = ScriptedConnector(RetryableError("crm", "rate limited", retry_after_s=60.0))
    handled = eraser(connector, keys).erase(sealed_task(keys.key, attempt=SETTINGS.retry_max_attempts))
    assert handled.requeue is None
    assert handled.outcome.status == "failed" and handled.outcome.error is not None
    assert handled.outcome.error.kind == "retryable"
    assert handled.outcome.error.message == "crm: rate limited (retry budget of 4 attempts spent)"


def test_pending_job_is_requeued_with_its_reference(keys: Keys) -> None:
    connector = ScriptedConnector(EraseResult("pending", job_ref="job-42", poll_after_s=900.0))
    handled = eraser(connector, keys).erase(sealed_task(keys.key, attempt=1))
    due = NOW + timedelta(seconds=900)
    assert handled.outcome.status == "pending" and handled.outcome.next_attempt_at == due
    assert handled.requeue is not None
    again = handled.requeue
    assert (again.attempt, again.not_before, again.job_ref) == (2, due, "job-42")


def test_pending_without_a_poll_time_is_polled_after_a_minute(keys: Keys) -> None:
    connector = ScriptedConnector(EraseResult("pending", job_ref="job-7"))
    handled = eraser(connector, keys).erase(sealed_task(keys.key))
    assert handled.requeue is not None and handled.requeue.not_before == NOW + timedelta(seconds=60)


@pytest.mark.parametrize("error", [PermanentError("crm", "account locked"),
                                   AuthError("crm", "token revoked")])
def test_permanent_and_auth_errors_fail_with_their_kind(keys: Keys, error: Exception) -> None:
    handled = eraser(ScriptedConnector(error), keys).erase(sealed_task(keys.key))
    assert handled.requeue is None and handled.outcome.status == "failed"
    assert handled.outcome.error is not None and handled.outcome.error.kind == getattr(error, "kind", None)
    assert handled.outcome.error.message == str(error)


def test_a_connector_bug_fails_the_task_without_the_exception_text(keys: Keys) -> None:
    handled = eraser(ScriptedConnector(KeyError(EMAIL)), keys).erase(sealed_task(keys.key))
    assert handled.outcome.status == "failed" and handled.outcome.error is not None
    assert handled.outcome.error.message == "crm: unexpected KeyError"
    assert EMAIL not in handled.outcome.model_dump_json()


def test_a_destroyed_data_key_fails_without_calling_the_connector(keys: Keys) -> None:
    connector = ScriptedConnector(EraseResult("erased"))
    task = sealed_task(keys.key)
    keys.destroyed.add(task.request_id)
    handled = eraser(connector, keys).erase(task)
    assert handled.outcome.status == "failed" and handled.outcome.error is not None
    assert handled.outcome.error.kind == "permanent"
    assert handled.outcome.error.message == "the request's data key is missing or destroyed"
    assert connector.calls == []


def test_identities_sealed_under_another_key_fail_permanently(keys: Keys) -> None:
    connector = ScriptedConnector(EraseResult("erased"))
    handled = eraser(connector, keys).erase(sealed_task(new_data_key()))
    assert handled.outcome.status == "failed" and handled.outcome.error is not None
    assert handled.outcome.error.kind == "permanent" and connector.calls == []
