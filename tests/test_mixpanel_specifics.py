"""Mixpanel specifics: weeks-long tasks, terminal states, cancel, two secrets, the real 1 rps limit."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import requests

from connectors.base import AuthError, ConfigError, PermanentError, RetryableError, TaskContext
from connectors.http import call_with_retries
from connectors.processors.mixpanel import MixpanelConnector, MixpanelSettings
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


def test_poll_interval_and_compliance_type_are_settings(fake: FakeMixpanel,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    instance = make(fake, monkeypatch, poll_after_s=60, compliance_type="CCPA")
    try:
        first = instance.erase(person(), ctx())
        assert first.poll_after_s == 60 and first.job_ref
        assert fake.tasks[first.job_ref].compliance_type == "CCPA"
    finally:
        instance.close()


@pytest.mark.parametrize(("switch", "expected"), [(True, "not_found"), (False, "erased")])
def test_unknown_ids_end_as_the_switch_says(monkeypatch: pytest.MonkeyPatch, switch: bool,
                                            expected: str) -> None:
    server = start(unknown_ids_end_not_found=switch)
    instance = make(server, monkeypatch)
    try:
        first = instance.erase(person("u-never-seen"), ctx())
        server.finish_jobs()
        assert server.tasks[str(first.job_ref)].status == ("NOT_FOUND" if switch else "SUCCESS")
        assert instance.erase(person(), ctx(first.job_ref, 2)).status == expected
    finally:
        instance.close()
        server.stop()


def test_failure_is_permanent_and_names_the_task_not_the_person(fake: FakeMixpanel,
                                                                connector: MixpanelConnector) -> None:
    fake.fail_next_task("FAILURE")
    first = connector.erase(person(), ctx())
    assert first.job_ref
    fake.finish_jobs()
    with pytest.raises(PermanentError) as info:
        connector.erase(person(), ctx(first.job_ref, 2))
    message = str(info.value)
    assert f"task {first.job_ref} ended FAILURE" in message
    assert USER not in message and EMAIL not in message and PROJECT not in message
    assert fake.holds(USER)


def test_unknown_status_stays_pending(fake: FakeMixpanel, connector: MixpanelConnector) -> None:
    fake.fail_next_task("UNKNOWN")
    first = connector.erase(person(), ctx())
    fake.finish_jobs()
    assert connector.erase(person(), ctx(first.job_ref, 2)).status == "pending"


def test_cancel_revokes_and_the_poll_then_fails(fake: FakeMixpanel, connector: MixpanelConnector) -> None:
    first = connector.erase(person(), ctx())
    assert first.job_ref
    connector.cancel(first.job_ref)
    assert fake.tasks[first.job_ref].status == "REVOKED"
    with pytest.raises(PermanentError, match="ended REVOKED"):
        connector.erase(person(), ctx(first.job_ref, 2))
    assert fake.holds(USER)
    with pytest.raises(PermanentError, match=r"HTTP 400 from DELETE /api/app/data-deletions/v3.0/"):
        connector.cancel(first.job_ref)


def test_cancel_answers_204(fake: FakeMixpanel, connector: MixpanelConnector) -> None:
    first = connector.erase(person(), ctx())
    response = requests.delete(f"{fake.url}/api/app/data-deletions/v3.0/{first.job_ref}",
                               params={"token": PROJECT}, headers={"Authorization": f"Bearer {OAUTH}"},
                               timeout=5)
    assert response.status_code == 204 and not response.content


def test_polling_an_unknown_task_is_permanent(connector: MixpanelConnector) -> None:
    with pytest.raises(PermanentError, match=r"HTTP 404 from GET /api/app/data-deletions/v3.0/\{task_id\}"):
        connector.erase(person(), ctx("nope", 2))


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
