"""SendGrid in batches: one search and one delete job for many people; an `errored` job mapped to
the right people; split searches past 100 e-mails; a throttled delete."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from connectors.base import BatchConnector, EraseResult, PermanentError, RetryableError
from connectors.processors.sendgrid import MAX_SEARCH_EMAILS, SendgridConnector, SendgridSettings
from tests.bulk_support import counted, email_only, item, person, total
from tests.fakes.sendgrid import FakeSendgrid

KEY = "SG.bulk-key"
SEARCH = "POST /v3/marketing/contacts/search/emails"
DELETE = "DELETE /v3/marketing/contacts"


def start(**options: object) -> FakeSendgrid:
    server = FakeSendgrid({KEY}, **{"polls_to_complete": None, **options})  # type: ignore[arg-type]
    server.start()
    return server


@pytest.fixture
def fake() -> Iterator[FakeSendgrid]:
    server = start()
    yield server
    server.stop()


def make(fake: FakeSendgrid, monkeypatch: pytest.MonkeyPatch) -> SendgridConnector:
    monkeypatch.setenv("TEST_SENDGRID_KEY", KEY)
    return SendgridConnector("sendgrid", SendgridSettings(base_url=fake.url, api_key_env="TEST_SENDGRID_KEY"))


@pytest.fixture
def connector(fake: FakeSendgrid, monkeypatch: pytest.MonkeyPatch) -> Iterator[SendgridConnector]:
    instance = make(fake, monkeypatch)
    yield instance
    instance.close()


def test_one_search_and_one_delete_job_for_the_batch(fake: FakeSendgrid,
                                                     connector: SendgridConnector) -> None:
    assert isinstance(connector, BatchConnector) and connector.max_batch == MAX_SEARCH_EMAILS
    ana, bo, bo_work, cy = (fake.add_contact(e) for e in
                            ("ana@example.net", "bo@example.net", "bo.work@example.net", "cy@example.net"))
    fake.add_contact("stays@example.net")
    batch = [item("sendgrid", email_only("ana@example.net"), n=1),
             item("sendgrid", email_only("nobody@example.net"), n=2),
             item("sendgrid", person("email", "bo@example.net", "bo.work@example.net"), n=3),
             item("sendgrid", person("email", "Cy@Example.net"), n=4),
             item("sendgrid", person("user_id", "no-email"), n=5)]
    with counted(fake) as calls:
        outcomes = connector.erase_batch(batch)
    assert calls == {SEARCH: 1, DELETE: 1}
    statuses = [o.status for o in outcomes if isinstance(o, EraseResult)]
    assert statuses == ["pending", "not_found", "pending", "pending", "not_found"]
    job_ids = {o.job_ref for o in outcomes if isinstance(o, EraseResult) and o.status == "pending"}
    assert len(job_ids) == 1
    job_id = job_ids.pop()
    assert job_id is not None and sorted(fake.jobs[job_id].contact_ids) == sorted([ana, bo, bo_work, cy])
    assert [o.evidence.records_affected for o in outcomes if isinstance(o, EraseResult) and o.evidence] == [
        1, 0, 2, 1, 0]

    fake.finish_jobs()
    polling = [item("sendgrid", batch[n].subject, job_id, n) for n in (0, 2, 3)]
    with counted(fake) as calls:
        done = connector.erase_batch(polling)
    assert calls == {f"GET /v3/marketing/contacts/imports/{job_id}": 1}, "a shared job is read once per batch"
    assert [o.status for o in done if isinstance(o, EraseResult)] == ["erased"] * 3
    assert connector.erase(polling[1].subject, polling[1].context).status == "erased", "one task polls alone"
    assert fake.has_contact("stays@example.net") and not fake.has_contact("cy@example.net")


def test_an_errored_job_fails_only_the_people_whose_contacts_are_left(
        fake: FakeSendgrid, connector: SendgridConnector) -> None:
    fake.add_contact("ana@example.net")
    stuck = fake.add_contact("bo@example.net")
    fake.add_contact("cy@example.net")
    fake.undeletable.add(stuck)
    emails = ("ana@example.net", "bo@example.net", "cy@example.net")
    created = connector.erase_batch([item("sendgrid", email_only(e), n=n) for n, e in enumerate(emails)])
    job_id = created[0].job_ref  # type: ignore[union-attr]
    assert job_id and {o.job_ref for o in created if isinstance(o, EraseResult)} == {job_id}
    fake.finish_jobs()
    assert fake.jobs[job_id].status == "errored"
    with counted(fake) as calls:
        ana, bo, cy = connector.erase_batch([item("sendgrid", email_only(e), job_id, n)
                                             for n, e in enumerate(emails)])
    assert total(calls, "GET") == 1 and calls[SEARCH] == 1, "one look-up maps the job's failures to people"
    assert isinstance(ana, EraseResult) and ana.status == "erased"
    assert isinstance(cy, EraseResult) and cy.status == "erased"
    assert ana.evidence and "errored; lookup finds none left" in str(ana.evidence.reference)
    assert isinstance(bo, PermanentError) and "1 of the person's contact(s) still present" in str(bo)
    assert "bo@" not in str(bo), "the error names the job, never the person"


def test_a_batch_over_100_people_is_split_into_searches_and_deletes(fake: FakeSendgrid,
                                                                     connector: SendgridConnector) -> None:
    """Split, not refused: searches of at most 100 e-mails (SendGrid's maximum), deletes of at most
    100 contact ids (our URL bound), one person's contacts never split."""
    emails = [f"p{n}@example.net" for n in range(MAX_SEARCH_EMAILS + 1)]
    for email in emails:
        fake.add_contact(email)
    with counted(fake) as calls:
        outcomes = connector.erase_batch([item("sendgrid", email_only(e), n=n) for n, e in enumerate(emails)])
    assert calls == {SEARCH: 2, DELETE: 2}
    refs = [o.job_ref for o in outcomes if isinstance(o, EraseResult)]
    assert len(refs) == len(emails) and len(set(refs)) == 2 and refs[-1] != refs[-2]
    assert sorted(len(job.contact_ids) for job in fake.jobs.values()) == [1, 100]


def test_a_throttled_delete_raises_retryable_with_the_wait_from_the_reset(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """SendGrid's 429 has no Retry-After: the wait comes from X-RateLimit-Reset."""
    server = start(limit_per_window=1, window_s=30)
    connector = make(server, monkeypatch)
    try:
        server.add_contact("ana@example.net")
        server.add_contact("bo@example.net")
        with counted(server) as calls, pytest.raises(RetryableError) as info:
            connector.erase_batch([item("sendgrid", email_only("ana@example.net"), n=1),
                                   item("sendgrid", email_only("bo@example.net"), n=2)])
        assert calls == {SEARCH: 1, DELETE: 1}, "the search spent the window; the delete was refused"
        assert info.value.http_status == 429
        assert info.value.retry_after_s is not None and 28 <= info.value.retry_after_s <= 31
        assert not server.jobs and server.has_contact("ana@example.net")
    finally:
        connector.close()
        server.stop()


def test_a_throttle_after_a_poll_delays_only_the_tasks_it_concerns(monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch polling one job and submitting others: the job's answer stands for its task; the
    search answered 429 delays the fresh tasks (returned, not raised), and no delete is tried."""
    server = start(limit_per_window=3, window_s=30)
    connector = make(server, monkeypatch)
    try:
        server.add_contact("ana@example.net")
        server.add_contact("bo@example.net")
        ana = item("sendgrid", email_only("ana@example.net"), n=1)
        first = connector.erase(ana.subject, ana.context)
        assert first.job_ref and first.status == "pending"  # 2 calls (search, delete): 1 left in the window
        server.finish_jobs()
        with counted(server) as calls:
            polled, fresh = connector.erase_batch([
                item("sendgrid", email_only("ana@example.net"), first.job_ref, 1),
                item("sendgrid", email_only("bo@example.net"), n=2)])
        assert isinstance(polled, EraseResult) and polled.status == "erased"
        assert isinstance(fresh, RetryableError) and fresh.http_status == 429 and fresh.retry_after_s
        assert total(calls, "GET") == 1 and calls[SEARCH] == 1 and DELETE not in calls
        assert server.has_contact("bo@example.net")
    finally:
        connector.close()
        server.stop()
