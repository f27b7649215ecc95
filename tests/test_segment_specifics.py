"""Segment specifics: the regulation body, its status machine, PARTIAL_SUCCESS, rate headers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from email.utils import parsedate_to_datetime

import pytest
import requests

from connectors.base import AuthError, PermanentError, RetryableError, TaskContext
from connectors.processors.segment import SegmentConnector, SegmentSettings, _listed
from schemas import Identity, SubjectIdentities
from tests.fakes.segment import FakeSegment

TOKEN = "sgp_specifics"
EMAIL = "ana.tester@example.net"
USER = "usr_ana_4242"
RID = "7d5e3c1a-4b2f-4c8d-9e6f-0a1b2c3d4e5f"


def ctx(job_ref: str | None = None, attempt: int = 1) -> TaskContext:
    return TaskContext(request_id=RID, system="segment", attempt=attempt, job_ref=job_ref)


def person(*user_ids: str) -> SubjectIdentities:
    identities = [Identity(identity_type="email", identity_value=EMAIL)]
    identities += [Identity(identity_type="user_id", identity_value=u) for u in (user_ids or (USER,))]
    return SubjectIdentities(identities=identities)


@pytest.fixture
def fake() -> Iterator[FakeSegment]:
    server = FakeSegment({TOKEN}, polls_to_finish=2)
    server.start()
    server.add_user(USER)
    server.add_user("usr_someone_else")
    yield server
    server.stop()


def make(fake: FakeSegment, monkeypatch: pytest.MonkeyPatch, **extra: object) -> SegmentConnector:
    monkeypatch.setenv("TEST_SEGMENT_TOKEN", TOKEN)
    return SegmentConnector("segment", SegmentSettings.model_validate(
        {"base_url": fake.url, "token_env": "TEST_SEGMENT_TOKEN", **extra}))


@pytest.fixture
def connector(fake: FakeSegment, monkeypatch: pytest.MonkeyPatch) -> Iterator[SegmentConnector]:
    instance = make(fake, monkeypatch, poll_after_s=900)
    yield instance
    instance.close()


def test_regulation_runs_to_finished(fake: FakeSegment, connector: SegmentConnector) -> None:
    first = connector.erase(person(), ctx())
    assert first.status == "pending" and first.job_ref and first.poll_after_s == 900
    assert first.evidence and first.evidence.reference == first.job_ref
    regulation = fake.regulations[first.job_ref]
    assert regulation.regulation_type == "SUPPRESS_WITH_DELETE" and regulation.subject_ids == [USER]
    assert regulation.status == "INITIALIZED"
    second = connector.erase(person(), ctx(first.job_ref, 2))
    assert second.status == "pending" and regulation.status == "RUNNING"
    assert fake.holds(USER)
    final = connector.erase(person(), ctx(first.job_ref, 3))
    assert final.status == "erased" and final.evidence and final.evidence.reference == first.job_ref
    assert not fake.holds(USER) and fake.holds("usr_someone_else")
    assert USER in fake.suppressed


def test_every_user_id_goes_into_one_regulation(fake: FakeSegment, connector: SegmentConnector) -> None:
    first = connector.erase(person(USER, "usr_ana_old", USER), ctx())
    assert first.job_ref and fake.regulations[first.job_ref].subject_ids == [USER, "usr_ana_old"]
    assert first.evidence and first.evidence.records_affected == 2


def test_partial_success_fails_naming_the_destinations_still_holding_data(
        fake: FakeSegment, connector: SegmentConnector) -> None:
    fake.fail_destination("dst_braze")
    first = connector.erase(person(), ctx())
    assert first.job_ref
    fake.finish_jobs()
    with pytest.raises(PermanentError) as info:
        connector.erase(person(), ctx(first.job_ref, 2))
    message = str(info.value)
    assert "PARTIAL_SUCCESS" in message and first.job_ref in message
    assert "Braze (dst_braze): FAILED" in message
    assert "Amplitude" not in message, "destinations that finished are not listed"
    assert USER not in message and EMAIL not in message
    assert "rejected" not in message, "Segment's errString may echo the subject: not copied"
    assert fake.destinations_holding(USER) == {"dst_braze"}


def test_every_destination_failing_is_failed(fake: FakeSegment, connector: SegmentConnector) -> None:
    for destination_id in fake.destinations:
        fake.fail_destination(destination_id)
    first = connector.erase(person(), ctx())
    assert first.job_ref
    fake.finish_jobs()
    with pytest.raises(PermanentError, match=f"regulation {first.job_ref} ended FAILED"):
        connector.erase(person(), ctx(first.job_ref, 2))


@pytest.mark.parametrize("ending", ["INVALID", "NOT_SUPPORTED"])
def test_invalid_and_not_supported_are_permanent(fake: FakeSegment, connector: SegmentConnector,
                                                 ending: str) -> None:
    fake.end_next_as(ending)
    first = connector.erase(person(), ctx())
    assert first.job_ref
    fake.finish_jobs()
    with pytest.raises(PermanentError, match=f"ended {ending}"):
        connector.erase(person(), ctx(first.job_ref, 2))
    assert fake.holds(USER)


def test_a_long_destination_list_stays_within_an_outcome_message() -> None:
    labels = [f"Destination number {i} (dst_{i:04d}): FAILED" for i in range(40)]
    text = _listed(labels)
    assert text.endswith("more") and len(text) < 400
    assert _listed([]) == "that Segment did not list"


def test_an_unknown_user_still_ends_erased(fake: FakeSegment, connector: SegmentConnector) -> None:
    first = connector.erase(person("usr_never_seen"), ctx())
    fake.finish_jobs()
    assert connector.erase(person(), ctx(first.job_ref, 2)).status == "erased"


def test_a_person_without_user_id_is_not_found_without_calling(fake: FakeSegment,
                                                                 connector: SegmentConnector) -> None:
    subject = SubjectIdentities(identities=[Identity(identity_type="email", identity_value=EMAIL)])
    assert connector.erase(subject, ctx()).status == "not_found"
    assert not fake.regulations


def test_a_regulation_segment_forgot_is_submitted_again_not_failed(fake: FakeSegment,
                                                                    connector: SegmentConnector) -> None:
    first = connector.erase(person(), ctx())
    assert first.job_ref
    fake.age(first.job_ref, days=91)  # Segment answers 404 for regulations older than 90 days
    assert requests.get(f"{fake.url}/regulations/{first.job_ref}", timeout=5,
                        headers={"authorization": f"Bearer {TOKEN}"}).status_code == 404
    again = connector.erase(person(), ctx(first.job_ref, 2))
    assert again.status == "pending" and again.job_ref and again.job_ref != first.job_ref
    assert again.evidence and f"replaces {first.job_ref}" in (again.evidence.reference or "")
    assert fake.regulations[again.job_ref].subject_ids == [USER]
    fake.finish_jobs()
    final = connector.erase(person(), ctx(again.job_ref, 3))
    assert final.status == "erased" and final.evidence and final.evidence.assurance == "confirmed"
    assert [r.what for r in final.evidence.residual] == [
        "the user id(s) on Segment's suppression list (so new data is dropped)"]
    assert not fake.holds(USER) and USER in fake.suppressed


def test_regulation_type_is_a_setting(fake: FakeSegment, monkeypatch: pytest.MonkeyPatch) -> None:
    instance = make(fake, monkeypatch, regulation_type="DELETE_ONLY")
    try:
        first = instance.erase(person(), ctx())
        assert first.job_ref and fake.regulations[first.job_ref].regulation_type == "DELETE_ONLY"
    finally:
        instance.close()
    with pytest.raises(ValueError):
        SegmentSettings.model_validate({"regulation_type": "UNSUPPRESS"})


def test_bad_token_is_an_auth_error_naming_the_variable(fake: FakeSegment,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_SEGMENT_TOKEN", "wrong")
    bad = SegmentConnector("segment", SegmentSettings(base_url=fake.url, token_env="TEST_SEGMENT_TOKEN"))
    try:
        with pytest.raises(AuthError, match="TEST_SEGMENT_TOKEN"):
            bad.erase(person(), ctx())
    finally:
        bad.close()
    assert not fake.regulations


def test_200s_carry_an_rfc5322_reset_and_429_carries_retry_after(monkeypatch: pytest.MonkeyPatch) -> None:
    server = FakeSegment({TOKEN}, limit_per_window=1, window_s=30)
    server.start()
    try:
        ok = requests.post(f"{server.url}/regulations", headers={"Authorization": f"Bearer {TOKEN}"},
                           json={"regulationType": "SUPPRESS_WITH_DELETE", "subjectType": "USER_ID",
                                 "subjectIds": ["u1"]}, timeout=5)
        assert ok.status_code == 200 and ok.json()["data"]["regulateId"]
        reset = parsedate_to_datetime(ok.headers["X-RateLimit-Reset"])
        assert ok.headers["X-RateLimit-Reset"].endswith("GMT") and reset.timestamp() > time.time()
        assert ok.headers["X-RateLimit-Remaining"] == "0" and ok.headers["X-RateLimit-Consumed"] == "1"
        instance = make(server, monkeypatch)
        try:
            with pytest.raises(RetryableError) as info:
                instance.erase(person(), ctx())
        finally:
            instance.close()
        assert info.value.http_status == 429
        assert info.value.retry_after_s is not None and 28 <= info.value.retry_after_s <= 30
    finally:
        server.stop()
