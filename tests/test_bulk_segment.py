"""Segment in batches: one regulation for many people, polled once, split past 5,000 user ids."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from connectors.base import BatchConnector, EraseResult, PermanentError, RetryableError
from connectors.processors.segment import MAX_SUBJECT_IDS, SegmentConnector, SegmentSettings
from tests.bulk_support import counted, email_only, item, person, total
from tests.fakes.segment import FakeSegment

TOKEN = "sgp_bulk"


@pytest.fixture
def fake() -> Iterator[FakeSegment]:
    server = FakeSegment({TOKEN}, polls_to_finish=None)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def connector(fake: FakeSegment, monkeypatch: pytest.MonkeyPatch) -> Iterator[SegmentConnector]:
    monkeypatch.setenv("TEST_SEGMENT_TOKEN", TOKEN)
    instance = SegmentConnector("segment", SegmentSettings(base_url=fake.url, token_env="TEST_SEGMENT_TOKEN"))
    yield instance
    instance.close()


def test_one_regulation_for_the_batch_and_each_person_gets_their_outcome(
        fake: FakeSegment, connector: SegmentConnector) -> None:
    assert isinstance(connector, BatchConnector) and connector.max_batch == MAX_SUBJECT_IDS
    for user in ("u1", "u2", "u3a", "u3b"):
        fake.add_user(user)
    batch = [item("segment", person("user_id", "u1"), n=1),
             item("segment", email_only("no.user.id@example.net"), n=2),
             item("segment", person("user_id", "u2"), n=3),
             item("segment", person("user_id", "u3a", "u3b"), n=4)]
    with counted(fake) as calls:
        outcomes = connector.erase_batch(batch)
    assert calls == {"POST /regulations": 1}, "one regulation for the whole batch"
    first, nothing, second, third = outcomes
    assert isinstance(nothing, EraseResult) and nothing.status == "not_found"
    pending = [first, second, third]
    assert all(isinstance(o, EraseResult) and o.status == "pending" for o in pending)
    job_refs = {o.job_ref for o in pending if isinstance(o, EraseResult)}
    assert len(job_refs) == 1 and None not in job_refs
    regulate_id = job_refs.pop()
    assert fake.regulations[regulate_id].subject_ids == ["u1", "u2", "u3a", "u3b"]
    affected = [o.evidence.records_affected for o in pending if isinstance(o, EraseResult) and o.evidence]
    assert affected == [1, 1, 2], "each person's own user ids"

    polling = [item("segment", b.subject, regulate_id, n) for n, b in enumerate(batch) if n != 1]
    with counted(fake) as calls:
        still = connector.erase_batch(polling)
    assert calls == {f"GET /regulations/{regulate_id}": 1}, "a shared regulation is read once per batch"
    assert all(isinstance(o, EraseResult) and o.status == "pending" and o.job_ref == regulate_id
               for o in still)
    fake.finish_jobs()
    alone = connector.erase(polling[2].subject, polling[2].context)
    assert alone.status == "erased", "one task polls the shared regulation on its own"
    done = connector.erase_batch(polling)
    assert [o.status for o in done if isinstance(o, EraseResult)] == ["erased"] * 3
    assert not any(fake.holds(u) for u in ("u1", "u2", "u3a", "u3b"))


def test_a_batch_past_5000_user_ids_is_split_into_regulations(fake: FakeSegment,
                                                               connector: SegmentConnector) -> None:
    """Split, not refused: in order, no regulation over Segment's 5,000 user ids, one person's ids
    never spread over two regulations."""
    batch = [item("segment", person("user_id", f"u{n}"), n=n) for n in range(MAX_SUBJECT_IDS - 1)]
    batch.append(item("segment", person("user_id", "last-a", "last-b"), n=MAX_SUBJECT_IDS))
    with counted(fake) as calls:
        outcomes = connector.erase_batch(batch)
    assert calls == {"POST /regulations": 2}
    refs = [o.job_ref for o in outcomes if isinstance(o, EraseResult)]
    assert len(refs) == len(batch) and len(set(refs)) == 2
    assert refs[-2] != refs[-1], "the person whose two ids do not fit goes to the next regulation"
    sizes = sorted(len(r.subject_ids) for r in fake.regulations.values())
    assert sizes == [2, MAX_SUBJECT_IDS - 1]


def test_a_failed_regulation_fails_its_people_and_spares_the_rest_of_the_batch(
        fake: FakeSegment, connector: SegmentConnector) -> None:
    fake.add_user("u-old")
    first = item("segment", person("user_id", "u-old"))
    old = connector.erase(first.subject, first.context)
    assert old.job_ref
    fake.fail_destination("dst_braze")
    fake.finish_jobs()
    fake.repair()
    batch = [item("segment", person("user_id", "u-old"), old.job_ref, 1),
             item("segment", person("user_id", "u-new"), n=2)]
    failed, fresh = connector.erase_batch(batch)
    assert isinstance(failed, PermanentError) and "PARTIAL_SUCCESS" in str(failed) and "Braze" in str(failed)
    assert "u-old" not in str(failed), "errors name the regulation and destinations, never the person"
    assert isinstance(fresh, EraseResult) and fresh.status == "pending"


def test_a_throttled_regulation_raises_retryable_with_segments_retry_after(
        fake: FakeSegment, connector: SegmentConnector) -> None:
    requests.post(f"{fake.url}/__fake__/faults", json={"status": 429, "reset_s": 30}, timeout=5)
    batch = [item("segment", person("user_id", f"u{n}"), n=n) for n in range(3)]
    with counted(fake) as calls, pytest.raises(RetryableError) as info:
        connector.erase_batch(batch)
    assert info.value.http_status == 429 and info.value.retry_after_s == 30
    assert total(calls, "POST") == 1 and not fake.regulations
