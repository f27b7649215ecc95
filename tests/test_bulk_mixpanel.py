"""Mixpanel in batches: one deletion task for many people, polled once, split past 1,999 ids."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from connectors.base import BatchConnector, EraseResult, PermanentError, RetryableError
from connectors.processors.mixpanel import MAX_DISTINCT_IDS, MixpanelConnector, MixpanelSettings
from tests.bulk_support import counted, email_only, item, person, total
from tests.fakes.mixpanel import PATH, FakeMixpanel

PROJECT = "bulk0project0token"
OAUTH = "mp-oauth-bulk"


def start(**options: object) -> FakeMixpanel:
    server = FakeMixpanel(PROJECT, {OAUTH}, **{"requests_per_second": 10_000, **options})  # type: ignore[arg-type]
    server.start()
    return server


@pytest.fixture
def fake() -> Iterator[FakeMixpanel]:
    server = start()
    yield server
    server.stop()


def make(fake: FakeMixpanel, monkeypatch: pytest.MonkeyPatch) -> MixpanelConnector:
    monkeypatch.setenv("TEST_MP_PROJECT", PROJECT)
    monkeypatch.setenv("TEST_MP_OAUTH", OAUTH)
    return MixpanelConnector("mixpanel", MixpanelSettings(
        base_url=fake.url, project_token_env="TEST_MP_PROJECT", oauth_token_env="TEST_MP_OAUTH"))


@pytest.fixture
def connector(fake: FakeMixpanel, monkeypatch: pytest.MonkeyPatch) -> Iterator[MixpanelConnector]:
    instance = make(fake, monkeypatch)
    yield instance
    instance.close()


def test_one_task_for_the_batch_and_each_person_gets_their_outcome(
        fake: FakeMixpanel, connector: MixpanelConnector) -> None:
    assert isinstance(connector, BatchConnector) and connector.max_batch == MAX_DISTINCT_IDS
    for distinct_id in ("d1", "d2", "d3"):
        fake.add_user(distinct_id)
    batch = [item("mixpanel", person("user_id", "d1"), n=1),
             item("mixpanel", email_only("no.distinct.id@example.net"), n=2),
             item("mixpanel", person("user_id", "d2", "d3"), n=3),
             item("mixpanel", person("user_id", "never-seen"), n=4)]
    with counted(fake) as calls:
        outcomes = connector.erase_batch(batch)
    assert calls == {f"POST {PATH}": 1}, "one deletion task for the whole batch"
    assert isinstance(outcomes[1], EraseResult) and outcomes[1].status == "not_found"
    pending = [o for n, o in enumerate(outcomes) if n != 1]
    assert all(isinstance(o, EraseResult) and o.status == "pending" for o in pending)
    task_ids = {o.job_ref for o in pending if isinstance(o, EraseResult)}
    assert len(task_ids) == 1
    task_id = task_ids.pop()
    assert task_id is not None and fake.tasks[task_id].distinct_ids == ["d1", "d2", "d3", "never-seen"]

    polling = [item("mixpanel", b.subject, task_id, n) for n, b in enumerate(batch) if n != 1]
    fake.finish_jobs()
    with counted(fake) as calls:
        done = connector.erase_batch(polling)
    assert total(calls, "GET") == 1, "a shared task is read once per batch"
    assert [o.status for o in done if isinstance(o, EraseResult)] == ["erased"] * 3
    assert not any(fake.holds(d) for d in ("d1", "d2", "d3"))
    assert connector.erase(polling[0].subject, polling[0].context).status == "erased", "one task polls alone"


def test_a_batch_past_1999_ids_is_split_into_tasks(fake: FakeMixpanel, connector: MixpanelConnector) -> None:
    batch = [item("mixpanel", person("user_id", f"d{n}"), n=n) for n in range(MAX_DISTINCT_IDS + 1)]
    with counted(fake) as calls:
        outcomes = connector.erase_batch(batch)
    assert calls == {f"POST {PATH}": 2}
    assert len({o.job_ref for o in outcomes if isinstance(o, EraseResult)}) == 2
    assert sorted(len(t.distinct_ids) for t in fake.tasks.values()) == [1, MAX_DISTINCT_IDS]


def test_a_failed_task_fails_its_people_and_a_lost_one_is_submitted_again_for_all_of_them(
        fake: FakeMixpanel, connector: MixpanelConnector) -> None:
    fake.fail_next_task()
    failing = connector.erase_batch([item("mixpanel", person("user_id", "f1"), n=1),
                                     item("mixpanel", person("user_id", "f2"), n=2)])
    lost = connector.erase_batch([item("mixpanel", person("user_id", "l1"), n=3),
                                  item("mixpanel", person("user_id", "l2"), n=4)])
    failing_ref, lost_ref = failing[0].job_ref, lost[0].job_ref  # type: ignore[union-attr]
    assert failing_ref and lost_ref
    fake.finish_jobs()
    fake.lose_task(lost_ref)
    batch = [item("mixpanel", person("user_id", "f1"), failing_ref, 1),
             item("mixpanel", person("user_id", "l1"), lost_ref, 3),
             item("mixpanel", person("user_id", "f2"), failing_ref, 2),
             item("mixpanel", person("user_id", "l2"), lost_ref, 4)]
    with counted(fake) as calls:
        f1, l1, f2, l2 = connector.erase_batch(batch)
    assert total(calls, "GET") == 2 and calls[f"POST {PATH}"] == 1
    assert isinstance(f1, PermanentError) and isinstance(f2, PermanentError) and "FAILURE" in str(f1)
    assert isinstance(l1, EraseResult) and isinstance(l2, EraseResult)
    assert l1.status == l2.status == "pending" and l1.job_ref == l2.job_ref != lost_ref
    assert l1.job_ref is not None and fake.tasks[l1.job_ref].distinct_ids == ["l1", "l2"]


def test_a_throttled_task_raises_retryable_with_the_announced_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """Mixpanel documents a 429 without headers; the fake's switch adds Retry-After to show the
    connector honours one when Mixpanel sends it."""
    server = start(rate_limit_headers=True)
    connector = make(server, monkeypatch)
    try:
        requests.post(f"{server.url}/__fake__/faults", json={"status": 429, "reset_s": 20}, timeout=5)
        with counted(server) as calls, pytest.raises(RetryableError) as info:
            connector.erase_batch([item("mixpanel", person("user_id", f"d{n}"), n=n) for n in range(3)])
        assert info.value.http_status == 429 and info.value.retry_after_s == 20
        assert calls == {f"POST {PATH}": 1} and not server.tasks
    finally:
        connector.close()
        server.stop()
