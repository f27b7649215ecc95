"""SendGrid specifics: lookup, asynchronous delete job, job polling, failed jobs, rate headers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Literal

import pytest
import requests

from connectors.base import PermanentError, RetryableError, TaskContext
from connectors.processors.sendgrid import SendgridConnector, SendgridSettings
from schemas import Identity, SubjectIdentities
from tests.fakes.sendgrid import FakeSendgrid

KEY = "SG.specifics-key"
EMAIL = "ana.tester@example.net"
RID = "7d5e3c1a-4b2f-4c8d-9e6f-0a1b2c3d4e5f"


def ctx(job_ref: str | None = None, attempt: int = 1) -> TaskContext:
    return TaskContext(request_id=RID, system="sendgrid", attempt=attempt, job_ref=job_ref)


def person(*emails: str) -> SubjectIdentities:
    return SubjectIdentities(identities=[Identity(identity_type="email", identity_value=e)
                                         for e in (emails or (EMAIL,))])


@pytest.fixture
def fake() -> Iterator[FakeSendgrid]:
    server = FakeSendgrid({KEY}, polls_to_complete=2)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def connector(fake: FakeSendgrid, monkeypatch: pytest.MonkeyPatch) -> Iterator[SendgridConnector]:
    monkeypatch.setenv("TEST_SENDGRID_KEY", KEY)
    instance = SendgridConnector("sendgrid", SendgridSettings(
        base_url=fake.url, api_key_env="TEST_SENDGRID_KEY", poll_after_s=120))
    yield instance
    instance.close()


def stats(fake: FakeSendgrid) -> dict[str, int]:
    body: dict[str, dict[str, int]] = requests.post(f"{fake.url}/__fake__/stats", json={}, timeout=5).json()
    return body["responses"]


def test_job_is_polled_until_completed_and_kept_as_evidence(fake: FakeSendgrid,
                                                            connector: SendgridConnector) -> None:
    fake.add_contact(EMAIL)
    fake.add_contact("other@example.net")
    first = connector.erase(person(), ctx())
    assert first.status == "pending" and first.job_ref and first.poll_after_s == 120
    assert first.evidence and first.evidence.reference == first.job_ref and first.evidence.http_status == 202
    assert fake.has_contact(EMAIL), "the contact stays until the job has run"
    second = connector.erase(person(), ctx(first.job_ref, 2))
    assert second.status == "pending" and second.job_ref == first.job_ref
    final = connector.erase(person(), ctx(first.job_ref, 3))
    assert final.status == "erased"
    assert final.evidence and final.evidence.reference == first.job_ref
    assert final.evidence.records_affected == 1
    assert not fake.has_contact(EMAIL) and fake.has_contact("other@example.net")
    assert connector.erase(person(), ctx()).status == "not_found", "a repeat finds nothing to delete"


def test_every_email_of_the_person_goes_into_one_job(fake: FakeSendgrid,
                                                     connector: SendgridConnector) -> None:
    fake.add_contact(EMAIL)
    fake.add_contact("ana.work@example.net")
    first = connector.erase(person(EMAIL, "ana.work@example.net", "never.seen@example.net"), ctx())
    assert first.evidence and first.evidence.records_affected == 2
    assert len(fake.jobs) == 1 and len(next(iter(fake.jobs.values())).contact_ids) == 2
    fake.finish_jobs()
    final = connector.erase(person(), ctx(first.job_ref, 2))
    assert final.status == "erased" and final.evidence and final.evidence.records_affected == 2


def test_search_404_is_not_found_and_starts_no_job(fake: FakeSendgrid, connector: SendgridConnector) -> None:
    result = connector.erase(person(), ctx())
    assert result.status == "not_found" and not fake.jobs
    assert stats(fake) == {"404": 1}


def test_a_person_without_email_is_not_found_without_calling(fake: FakeSendgrid,
                                                               connector: SendgridConnector) -> None:
    subject = SubjectIdentities(identities=[Identity(identity_type="user_id", identity_value="u-1")])
    assert connector.erase(subject, ctx()).status == "not_found"
    assert stats(fake) == {}


@pytest.mark.parametrize("ending", ["errored", "failed"])
def test_a_failed_job_is_permanent_and_names_the_job_not_the_person(
        fake: FakeSendgrid, connector: SendgridConnector, ending: str) -> None:
    fake.add_contact(EMAIL)
    fake.fail_next_job(ending)
    first = connector.erase(person(), ctx())
    assert first.job_ref
    fake.finish_jobs()
    with pytest.raises(PermanentError) as info:
        connector.erase(person(), ctx(first.job_ref, 2))
    message = str(info.value)
    assert first.job_ref in message and ending in message
    assert EMAIL not in message and "ana.tester" not in message
    assert "https://" not in message, "errors_url leads to a file listing contacts: not copied"
    assert fake.has_contact(EMAIL)


def test_polling_an_unknown_job_is_permanent(connector: SendgridConnector) -> None:
    with pytest.raises(PermanentError, match=r"HTTP 404 from GET /v3/marketing/contacts/imports/\{job_id\}"):
        connector.erase(person(), ctx("no-such-job", 2))


def test_every_response_carries_epoch_rate_headers(fake: FakeSendgrid) -> None:
    auth = {"Authorization": f"Bearer {KEY}"}
    for response in (
        requests.post(f"{fake.url}/v3/marketing/contacts/search/emails", json={"emails": [EMAIL]},
                      headers=auth, timeout=5),
        requests.delete(f"{fake.url}/v3/marketing/contacts", params={"ids": "x"}, headers=auth, timeout=5),
        requests.get(f"{fake.url}/v3/marketing/contacts/imports/nope", headers=auth, timeout=5),
    ):
        assert {"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"} <= set(response.headers)
        assert int(response.headers["X-RateLimit-Reset"]) >= int(time.time())


@pytest.mark.parametrize("reset_header", ["epoch", "seconds"])
def test_bucket_exhaustion_gives_sendgrid_429_and_the_wait_comes_from_the_reset(
        reset_header: Literal["epoch", "seconds"], monkeypatch: pytest.MonkeyPatch) -> None:
    """SendGrid's pages disagree on X-RateLimit-Reset (window end as epoch, or seconds left):
    either way the connector waits out the window."""
    server = FakeSendgrid({KEY}, limit_per_window=1, window_s=30, reset_header=reset_header)
    server.start()
    monkeypatch.setenv("TEST_SENDGRID_KEY", KEY)
    instance = SendgridConnector("sendgrid",
                                 SendgridSettings(base_url=server.url, api_key_env="TEST_SENDGRID_KEY"))
    try:
        server.add_contact(EMAIL)
        raw = requests.post(f"{server.url}/v3/marketing/contacts/search/emails", json={"emails": [EMAIL]},
                            headers={"Authorization": f"Bearer {KEY}"}, timeout=5)
        assert raw.status_code == 200
        with pytest.raises(RetryableError) as info:
            instance.erase(person(), ctx())
        assert info.value.http_status == 429
        assert info.value.retry_after_s is not None and 28 <= info.value.retry_after_s <= 31
        again = requests.post(f"{server.url}/v3/marketing/contacts/search/emails", json={"emails": [EMAIL]},
                              headers={"Authorization": f"Bearer {KEY}"}, timeout=5)
        assert again.status_code == 429
        assert again.json() == {"errors": [{"field": None, "message": "too many requests"}]}
        assert "retry-after" not in {k.lower() for k in again.headers}
        assert again.headers["X-RateLimit-Remaining"] == "0"
        reset = int(again.headers["X-RateLimit-Reset"])
        assert reset >= int(time.time()) if reset_header == "epoch" else 1 <= reset <= 30
    finally:
        instance.close()
        server.stop()


def test_jobs_finish_through_the_control_endpoint_too(fake: FakeSendgrid,
                                                      connector: SendgridConnector) -> None:
    fake.polls_to_complete = None
    fake.add_contact(EMAIL)
    first = connector.erase(person(), ctx())
    for attempt in (2, 3, 4):
        assert connector.erase(person(), ctx(first.job_ref, attempt)).status == "pending"
    requests.post(f"{fake.url}/__fake__/finish_jobs", json={}, timeout=5).raise_for_status()
    assert connector.erase(person(), ctx(first.job_ref, 5)).status == "erased"


def test_errored_is_partial_the_contacts_left_fail_the_erasure(fake: FakeSendgrid,
                                                               connector: SendgridConnector) -> None:
    kept = fake.add_contact(EMAIL)
    fake.add_contact("ana.other@example.net")
    fake.undeletable.add(kept)
    first = connector.erase(person(EMAIL, "ana.other@example.net"), ctx())
    fake.finish_jobs()
    assert fake.jobs[first.job_ref or ""].status == "errored"
    with pytest.raises(PermanentError) as info:
        connector.erase(person(EMAIL, "ana.other@example.net"), ctx(first.job_ref, 2))
    message = str(info.value)
    assert "ended errored" in message and "1 deleted, 1 of the person's contact(s) still present" in message
    assert EMAIL not in message and fake.has_contact(EMAIL) and not fake.has_contact("ana.other@example.net")
    # The officer's retry submits what is left as a new job, which completes.
    fake.undeletable.clear()
    again = connector.erase(person(EMAIL, "ana.other@example.net"), ctx(attempt=3))
    fake.finish_jobs()
    final = connector.erase(person(EMAIL, "ana.other@example.net"), ctx(again.job_ref, 4))
    assert final.status == "erased" and not fake.has_contact(EMAIL)


def test_errored_with_nothing_of_the_person_left_is_erased_by_lookup(fake: FakeSendgrid,
                                                                     connector: SendgridConnector) -> None:
    fake.add_contact(EMAIL)
    first = connector.erase(person(), ctx())
    fake.jobs[first.job_ref or ""].ends_as = "errored"  # errors on contacts that were not the person's
    fake.contacts.clear()
    fake.finish_jobs()
    result = connector.erase(person(), ctx(first.job_ref, 2))
    assert result.status == "erased" and result.evidence is not None
    assert result.evidence.assurance == "confirmed"
    assert "lookup finds none left" in (result.evidence.reference or "")
