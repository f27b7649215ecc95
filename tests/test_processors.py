"""Every processor connector against its fake (a real HTTP server), through the same scenarios:
erased, not found, rate limited then erased, server error then erased, bad credentials,
and, for asynchronous APIs, pending then final. The connector is built from systems.yaml
settings through the registry, and driven the way the runtime drives it (one retry policy,
job polling through `job_ref`).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from connectors.base import AuthError, Connector, EraseResult, RetryableError, TaskContext
from connectors.http import call_with_retries
from connectors.pacing import PACERS
from connectors.registry import build_connector, settings_model
from pipeline.policy import load_policy
from tests.processors import CASE_MODULES, load_cases
from tests.processors.common import ProcessorCase

CASES: list[ProcessorCase] = load_cases()
POLICY, _ = load_policy(None)
RECEIVED = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
RID = "7d5e3c1a-4b2f-4c8d-9e6f-0a1b2c3d4e5f"
MAX_POLLS = 10




def connector(case: ProcessorCase, fake: Any) -> Connector:
    settings = settings_model(case.type).model_validate(case.settings(fake))
    built = build_connector(f"{case.type}-system".replace("_", "-"), case.type, settings)
    # These runs wait on a virtual clock (`drive`'s sleep): the lanes' real-time pacing and
    # holds would never see that time pass. Pacing has its own tests (test_pacing.py).
    PACERS.reset()
    return built


def drive(case: ProcessorCase, fake: Any, subject_email: str, waits: list[float] | None = None,
          ) -> tuple[EraseResult, list[str]]:
    """Run like the runtime: retry policy around each call; poll jobs until they end."""
    instance = connector(case, fake)
    statuses: list[str] = []
    job_ref: str | None = None
    try:
        for attempt in range(1, MAX_POLLS + 1):
            context = TaskContext(request_id=RID, system=instance.system, attempt=attempt, job_ref=job_ref,
                                  received_at=RECEIVED, retention=POLICY)
            result = call_with_retries(lambda c=context: instance.erase(case.subject(subject_email), c),  # type: ignore[misc]
                                       attempts=3, max_wait_s=5, backoff_cap_s=0.01,
                                       sleep=(waits.append if waits is not None else lambda _: None))
            statuses.append(result.status)
            if result.status != "pending":
                return result, statuses
            assert result.job_ref, "a pending outcome names the job to poll"
            job_ref = result.job_ref
            case.finish_jobs(fake)
        raise AssertionError(f"still pending after {MAX_POLLS} polls: {statuses}")
    finally:
        instance.close()


def first_attempt(instance: Connector) -> TaskContext:
    return TaskContext(request_id=RID, system=instance.system, attempt=1, received_at=RECEIVED,
                       retention=POLICY)


def person() -> str:
    return f"case.{uuid.uuid4().hex[:10]}@example.test"


def test_every_processor_connector_has_a_case() -> None:
    from connectors.registry import connector_types

    stores = {"sql", "redis", "files", "kafka_topic", "manual"}
    assert set(connector_types()) - stores <= {c.type for c in CASES}
    assert len(CASES) == len(CASE_MODULES), "every listed case module exists"


def test_erased(case: ProcessorCase, fake: Any) -> None:
    email, other = person(), person()
    case.seed(fake, email)
    case.seed(fake, other)
    result, statuses = drive(case, fake, email)
    assert result.status == case.final_status
    assert not case.holds_data(fake, email)
    assert case.holds_data(fake, other), "someone else's data is untouched"
    assert result.evidence is not None
    if case.asynchronous:
        assert statuses[0] == "pending" and statuses[-1] == result.status
        assert result.evidence.reference, "the job id is kept as evidence"


def test_not_found(case: ProcessorCase, fake: Any) -> None:
    if not case.supports_not_found:
        pytest.skip(f"{case.type}'s API cannot tell an unknown person (upsert)")
    result, _ = drive(case, fake, person())
    assert result.status == "not_found"


def test_erasing_twice_ends_not_found(case: ProcessorCase, fake: Any) -> None:
    if not case.supports_not_found:
        pytest.skip(f"{case.type}'s API cannot tell an unknown person (upsert)")
    email = person()
    case.seed(fake, email)
    drive(case, fake, email)
    assert drive(case, fake, email)[0].status == "not_found"


def test_rate_limited_then_erased(case: ProcessorCase, fake: Any) -> None:
    email = person()
    case.seed(fake, email)
    announced = case.rate_limit_next(fake)
    waits: list[float] = []
    result, _ = drive(case, fake, email, waits)
    assert result.status == case.final_status and not case.holds_data(fake, email)
    assert waits, "the rate limit was met and waited out"
    if announced is not None:
        assert abs(waits[0] - announced) <= 1.0, f"waited {waits[0]} s, the processor said {announced} s"


def test_server_error_then_erased(case: ProcessorCase, fake: Any) -> None:
    email = person()
    case.seed(fake, email)
    case.fail_next(fake, 503)
    result, _ = drive(case, fake, email)
    assert result.status == case.final_status and not case.holds_data(fake, email)


def test_persistent_server_error_is_retryable_and_names_no_one(case: ProcessorCase, fake: Any) -> None:
    email = person()
    case.seed(fake, email)
    instance = connector(case, fake)
    case.fail_next(fake, 500)
    try:
        with pytest.raises(RetryableError) as info:
            instance.erase(case.subject(email), first_attempt(instance))
    finally:
        instance.close()
    assert email not in str(info.value) and email.split("@")[0] not in str(info.value)


def test_bad_credentials_fail_naming_system_and_variable(case: ProcessorCase, fake: Any,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    email = person()
    case.seed(fake, email)
    monkeypatch.setenv(case.auth_env, "wrong-credential")
    instance = connector(case, fake)
    try:
        with pytest.raises(AuthError) as info:
            instance.erase(case.subject(email), first_attempt(instance))
    finally:
        instance.close()
    assert instance.system in str(info.value) and case.auth_env in str(info.value)
    assert case.holds_data(fake, email), "nothing erased with bad credentials"


def test_missing_secret_names_the_variable(case: ProcessorCase, fake: Any,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from connectors.base import ConfigError

    monkeypatch.delenv(case.auth_env)
    with pytest.raises(ConfigError, match=case.auth_env):
        connector(case, fake)
