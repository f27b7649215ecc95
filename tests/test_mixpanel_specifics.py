"""Mixpanel specifics: weeks-long tasks, terminal states, cancel, two secrets, the real 1 rps limit."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from connectors.base import AuthError, ConfigError, PermanentError, RetryableError, TaskContext
from connectors.http import call_with_retries
from connectors.processors.mixpanel import MixpanelConnector, MixpanelSettings
from pipeline.devstack.fake_server import Reply
from schemas import Identity, SubjectIdentities
from tests.fakes.mixpanel import FakeMixpanel

PROJECT = "specifics0project0token"
OAUTH = "mp-oauth-specifics"
EMAIL = "ana.tester@example.net"
USER = "u-ana-4242"
RID = "7d5e3c1a-4b2f-4c8d-9e6f-0a1b2c3d4e5f"
DAY_S = 86400.0


def ctx(job_ref: str | None = None, attempt: int = 1) -> TaskContext:
    return TaskContext(request_id=RID, system="mixpanel", attempt=attempt, job_ref=job_ref)


def person(*user_ids: str) -> SubjectIdentities:
    identities = [Identity(identity_type="email", identity_value=EMAIL)]
    identities += [Identity(identity_type="user_id", identity_value=u) for u in (user_ids or (USER,))]
    return SubjectIdentities(identities=identities)


def start(**options: object) -> FakeMixpanel:
    server = FakeMixpanel(PROJECT, {OAUTH}, **{"requests_per_second": 1000, **options})  # type: ignore[arg-type]
    server.start()
    server.add_user(USER)
    server.add_user("u-someone-else")
    return server


def make(fake: FakeMixpanel, monkeypatch: pytest.MonkeyPatch, **extra: object) -> MixpanelConnector:
    monkeypatch.setenv("TEST_MP_PROJECT", PROJECT)
    monkeypatch.setenv("TEST_MP_OAUTH", OAUTH)
    return MixpanelConnector("mixpanel", MixpanelSettings.model_validate(
        {"base_url": fake.url, "project_token_env": "TEST_MP_PROJECT", "oauth_token_env": "TEST_MP_OAUTH",
         **extra}))


@pytest.fixture
def fake() -> Iterator[FakeMixpanel]:
    server = start()
    yield server
    server.stop()


@pytest.fixture
def connector(fake: FakeMixpanel, monkeypatch: pytest.MonkeyPatch) -> Iterator[MixpanelConnector]:
    instance = make(fake, monkeypatch)
    yield instance
    instance.close()


def test_a_task_runs_for_weeks_and_is_polled_every_six_hours(fake: FakeMixpanel,
                                                             connector: MixpanelConnector) -> None:
    first = connector.erase(person(), ctx())
    assert first.status == "pending" and first.job_ref and first.poll_after_s == 6 * 3600
    assert first.evidence and first.evidence.reference == first.job_ref and first.evidence.http_status == 201
    task = fake.tasks[first.job_ref]
    assert task.distinct_ids == [USER] and task.compliance_type == "GDPR"
    seen = []
    for attempt in range(2, 5):
        fake.advance_clock(DAY_S)
        result = connector.erase(person(), ctx(first.job_ref, attempt))
        assert result.status == "pending" and result.job_ref == first.job_ref
        seen.append(task.status)
    assert seen == ["STAGING", "STARTED", "STARTED"] and fake.holds(USER)
    fake.advance_clock(14 * DAY_S)
    final = connector.erase(person(), ctx(first.job_ref, 5))
    assert final.status == "erased" and final.evidence and final.evidence.reference == first.job_ref
    assert not fake.holds(USER) and fake.holds("u-someone-else")


@pytest.mark.parametrize("shape", ["object", "array"])
def test_both_documented_shapes_of_the_created_task_are_read(shape: str,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The spec's `results.task_id` and the reference example's `results[].tracking_id`."""
    server = start(created_shape=shape)
    instance = make(server, monkeypatch)
    try:
        raw = requests.post(f"{server.url}/api/app/data-deletions/v3.0/", params={"token": PROJECT},
                            headers={"Authorization": f"Bearer {OAUTH}"}, json={"distinct_ids": ["u-probe"]},
                            timeout=5).json()
        assert isinstance(raw["results"], dict if shape == "object" else list)
        first = instance.erase(person(), ctx())
        assert first.status == "pending" and first.job_ref in server.tasks
        assert server.tasks[str(first.job_ref)].distinct_ids == [USER]
        server.finish_jobs()
        final = instance.erase(person(), ctx(first.job_ref, 2))
        assert final.status == "erased" and not server.holds(USER)
    finally:
        instance.close()
        server.stop()


class SeveralTasksMixpanel(FakeMixpanel):
    """Answers a creation with `results` naming two tasks (or none): no documented answer does."""

    def __init__(self, tracking_ids: list[str]) -> None:
        super().__init__(PROJECT, {OAUTH}, requests_per_second=1000, created_shape="array")
        self.tracking_ids = tracking_ids

    def _create(self, body: dict[str, Any]) -> Reply:
        reply = super()._create(body)
        results = [{"tracking_id": t} for t in self.tracking_ids]
        return Reply(reply.status, {"status": "ok", "results": results})


@pytest.mark.parametrize(("tracking_ids", "message"), [
    (["task-a", "task-b"], "names 2 tasks for one deletion"),
    ([], "no task id (results.task_id or results[].tracking_id)")])
def test_an_answer_naming_no_task_or_several_is_a_permanent_error(
        tracking_ids: list[str], message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    server = SeveralTasksMixpanel(tracking_ids)
    server.start()
    instance = make(server, monkeypatch)
    try:
        with pytest.raises(PermanentError, match=re.escape(message)):
            instance.erase(person(), ctx())
    finally:
        instance.close()
        server.stop()


def test_poll_interval_and_compliance_type_are_settings(fake: FakeMixpanel,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    instance = make(fake, monkeypatch, poll_after_s=60, compliance_type="CCPA")
    try:
        first = instance.erase(person(), ctx())
        assert first.poll_after_s == 60 and first.job_ref
        assert fake.tasks[first.job_ref].compliance_type == "CCPA"
    finally:
        instance.close()


def test_a_task_for_ids_mixpanel_never_held_ends_success_never_not_found(
        fake: FakeMixpanel, connector: MixpanelConnector) -> None:
    first = connector.erase(person("u-never-seen"), ctx())
    fake.finish_jobs()
    assert fake.tasks[str(first.job_ref)].status == "SUCCESS"
    assert connector.erase(person("u-never-seen"), ctx(first.job_ref, 2)).status == "erased"


def test_a_lost_task_is_submitted_again_and_never_recorded_not_found(fake: FakeMixpanel,
                                                                     connector: MixpanelConnector) -> None:
    """NOT_FOUND is "The deletion task cannot be found": the person's data is still there."""
    first = connector.erase(person(), ctx())
    assert first.job_ref
    fake.lose_task(first.job_ref)
    again = connector.erase(person(), ctx(first.job_ref, 2))
    assert again.status == "pending" and again.job_ref and again.job_ref != first.job_ref
    assert again.evidence and again.evidence.reference == again.job_ref
    assert list(fake.tasks) == [again.job_ref] and fake.tasks[again.job_ref].distinct_ids == [USER]
    assert fake.holds(USER)
    fake.finish_jobs()
    assert connector.erase(person(), ctx(again.job_ref, 3)).status == "erased"
    assert not fake.holds(USER) and fake.holds("u-someone-else")


def test_the_fake_answers_not_found_for_a_task_it_does_not_hold(fake: FakeMixpanel) -> None:
    raw = requests.get(f"{fake.url}/api/app/data-deletions/v3.0/never-created", params={"token": PROJECT},
                       headers={"Authorization": f"Bearer {OAUTH}"}, timeout=5)
    assert raw.status_code == 200 and raw.json()["results"]["status"] == "NOT_FOUND"


def test_unknown_is_a_retryable_error_that_keeps_the_task(fake: FakeMixpanel,
                                                          connector: MixpanelConnector) -> None:
    """UNKNOWN is "An error occurred while locating the deletion task": not a running task."""
    first = connector.erase(person(), ctx())
    assert first.job_ref
    fake.unknown_next_polls(1)
    with pytest.raises(RetryableError) as info:
        connector.erase(person(), ctx(first.job_ref, 2))
    assert info.value.retry_after_s == 900 and "UNKNOWN" in str(info.value)
    assert USER not in str(info.value) and PROJECT not in str(info.value)
    fake.finish_jobs()
    assert connector.erase(person(), ctx(first.job_ref, 3)).status == "erased"
    assert list(fake.tasks) == [first.job_ref], "the same task, no new one"


def test_unknown_through_the_worker_retries_later_keeping_the_job_ref(
        fake: FakeMixpanel, connector: MixpanelConnector) -> None:
    first = connector.erase(person(), ctx())
    fake.unknown_next_polls(5)
    with pytest.raises(RetryableError) as info:
        call_with_retries(lambda: connector.erase(person(), ctx(first.job_ref, 2)), attempts=3,
                          max_wait_s=30, backoff_cap_s=30, sleep=lambda _s: None)
    assert info.value.retry_after_s == 900, "too long to sleep in process: the runtime re-queues the task"


def many(count: int) -> SubjectIdentities:
    """More ids than a subject validates today (20): built unchecked to reach Mixpanel's own limit."""
    return SubjectIdentities.model_construct(identities=[
        Identity(identity_type="user_id", identity_value=f"u-{n}") for n in range(count)])


def test_deletions_take_at_most_1999_distinct_ids(fake: FakeMixpanel, connector: MixpanelConnector) -> None:
    ids = [f"u-{n}" for n in range(2000)]
    with pytest.raises(PermanentError, match="more than 1999 distinct ids"):
        connector.erase(many(2000), ctx())
    assert not fake.tasks
    assert connector.erase(many(1999), ctx()).status == "pending"
    raw = requests.post(f"{fake.url}/api/app/data-deletions/v3.0/", params={"token": PROJECT},
                        headers={"Authorization": f"Bearer {OAUTH}"},
                        json={"distinct_ids": ids, "compliance_type": "GDPR"}, timeout=5)
    assert raw.status_code == 400 and len(fake.tasks) == 1


def test_failure_is_permanent_and_names_the_task_not_the_person(fake: FakeMixpanel,
                                                                connector: MixpanelConnector) -> None:
    fake.fail_next_task()
    first = connector.erase(person(), ctx())
    assert first.job_ref
    fake.finish_jobs()
    with pytest.raises(PermanentError) as info:
        connector.erase(person(), ctx(first.job_ref, 2))
    message = str(info.value)
    assert f"task {first.job_ref} ended FAILURE" in message
    assert USER not in message and EMAIL not in message and PROJECT not in message
    assert fake.holds(USER)


def test_cancel_revokes_and_the_poll_then_fails(fake: FakeMixpanel, connector: MixpanelConnector) -> None:
    first = connector.erase(person(), ctx())
    assert first.job_ref
    connector.cancel(first.job_ref)
    assert fake.tasks[first.job_ref].status == "REVOKED"
    with pytest.raises(PermanentError, match="ended REVOKED"):
        connector.erase(person(), ctx(first.job_ref, 2))
    assert fake.holds(USER)
    with pytest.raises(PermanentError, match=r"HTTP 405 from DELETE /api/app/data-deletions/v3.0/"):
        connector.cancel(first.job_ref)


def test_a_started_task_cannot_be_canceled(fake: FakeMixpanel, connector: MixpanelConnector) -> None:
    """Mixpanel's status table: STAGING "can still be canceled", STARTED "cannot be canceled"."""
    first = connector.erase(person(), ctx())
    assert first.job_ref
    for attempt in (2, 3):  # PENDING -> STAGING -> STARTED
        connector.erase(person(), ctx(first.job_ref, attempt))
    assert fake.tasks[first.job_ref].status == "STARTED"
    with pytest.raises(PermanentError, match=r"HTTP 405 from DELETE /api/app/data-deletions/v3.0/"):
        connector.cancel(first.job_ref)
    assert fake.tasks[first.job_ref].status == "STARTED"


def test_cancel_answers_204(fake: FakeMixpanel, connector: MixpanelConnector) -> None:
    first = connector.erase(person(), ctx())
    response = requests.delete(f"{fake.url}/api/app/data-deletions/v3.0/{first.job_ref}",
                               params={"token": PROJECT}, headers={"Authorization": f"Bearer {OAUTH}"},
                               timeout=5)
    assert response.status_code == 204 and not response.content


def test_a_person_without_user_id_is_not_found_without_calling(fake: FakeMixpanel,
                                                                 connector: MixpanelConnector) -> None:
    subject = SubjectIdentities(identities=[Identity(identity_type="email", identity_value=EMAIL)])
    assert connector.erase(subject, ctx()).status == "not_found" and not fake.tasks


def test_a_wrong_project_token_is_an_auth_error_naming_both_variables(
        fake: FakeMixpanel, monkeypatch: pytest.MonkeyPatch) -> None:
    instance = make(fake, monkeypatch)
    instance.close()
    monkeypatch.setenv("TEST_MP_PROJECT", "another-project")
    bad = MixpanelConnector("mixpanel", MixpanelSettings(
        base_url=fake.url, project_token_env="TEST_MP_PROJECT", oauth_token_env="TEST_MP_OAUTH"))
    try:
        with pytest.raises(AuthError) as info:
            bad.erase(person(), ctx())
    finally:
        bad.close()
    assert "HTTP 403" in str(info.value) and "TEST_MP_OAUTH" in str(info.value)
    assert "TEST_MP_PROJECT" in str(info.value) and "another-project" not in str(info.value)
    assert not fake.tasks


@pytest.mark.parametrize("missing", ["TEST_MP_PROJECT", "TEST_MP_OAUTH"])
def test_each_missing_secret_is_named(fake: FakeMixpanel, monkeypatch: pytest.MonkeyPatch,
                                      missing: str) -> None:
    make(fake, monkeypatch).close()
    monkeypatch.delenv(missing)
    with pytest.raises(ConfigError, match=missing):
        MixpanelConnector("mixpanel", MixpanelSettings(base_url=fake.url, project_token_env="TEST_MP_PROJECT",
                                                       oauth_token_env="TEST_MP_OAUTH"))


def test_the_project_token_never_appears_in_errors(fake: FakeMixpanel, connector: MixpanelConnector) -> None:
    requests.post(f"{fake.url}/__fake__/faults", json={"status": 500}, timeout=5).raise_for_status()
    with pytest.raises(RetryableError) as info:
        connector.erase(person(), ctx())
    assert PROJECT not in str(info.value) and "token=" not in str(info.value)


# -- the real limit: 1 request a second ----------------------------------------------------------

def test_one_request_a_second_then_a_bare_429(monkeypatch: pytest.MonkeyPatch) -> None:
    server = start(requests_per_second=1)
    instance = make(server, monkeypatch)
    try:
        first = instance.erase(person(), ctx())
        assert first.status == "pending"
        with pytest.raises(RetryableError) as info:
            instance.erase(person(), ctx(first.job_ref, 2))
        assert info.value.http_status == 429 and info.value.retry_after_s is None
        raw = requests.get(f"{server.url}/api/app/data-deletions/v3.0/{first.job_ref}",
                           params={"token": PROJECT}, headers={"Authorization": f"Bearer {OAUTH}"}, timeout=5)
        assert raw.status_code == 429
        assert not {"retry-after", "x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"} & {
            k.lower() for k in raw.headers}
        time.sleep(1.05)
        assert instance.erase(person(), ctx(first.job_ref, 2)).status == "pending", "a second later it passes"
    finally:
        instance.close()
        server.stop()


def test_one_request_a_second_with_headers_is_waited_out(monkeypatch: pytest.MonkeyPatch) -> None:
    server = start(requests_per_second=1, rate_limit_headers=True)
    instance = make(server, monkeypatch)
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        time.sleep(seconds)

    try:
        first = instance.erase(person(), ctx())
        server.finish_jobs()
        result = call_with_retries(lambda: instance.erase(person(), ctx(first.job_ref, 2)), attempts=3,
                                   max_wait_s=5, backoff_cap_s=5, sleep=sleep)
        assert result.status == "erased"
        assert waits == [1.0], "Retry-After: 1 was honoured"
    finally:
        instance.close()
        server.stop()


def test_the_bare_429_is_backed_off_by_the_retry_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    server = start(requests_per_second=1)
    instance = make(server, monkeypatch)
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        time.sleep(1.05)  # what the jittered backoff would reach; kept fixed so the test is not flaky

    try:
        first = instance.erase(person(), ctx())
        server.finish_jobs()
        result = call_with_retries(lambda: instance.erase(person(), ctx(first.job_ref, 2)), attempts=3,
                                   max_wait_s=5, backoff_cap_s=5, sleep=sleep)
        assert result.status == "erased" and len(waits) == 1
    finally:
        instance.close()
        server.stop()
