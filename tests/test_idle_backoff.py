"""An idle connector lane polls rarely, and a busy one often: `pipeline.worker.idle.IdleBackoff`."""

from __future__ import annotations

from typing import Any

from pipeline.worker.idle import IDLE_AFTER_S, LONG_FETCH_WAIT_MS, LONG_POLL_MS, SHORT_POLL_MS, IdleBackoff


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class ScriptedConsumer:
    """Returns the scripted record counts poll after poll (nothing once they run out); remembers
    each poll's wait and each fetch wait it was given, as `LaneConsumer` would apply them."""

    def __init__(self, clock: Clock, records: list[int], poll_takes_s: float = 1.0) -> None:
        self.clock, self.records, self.poll_takes_s = clock, records, poll_takes_s
        self.poll_waits_ms: list[int] = []
        self.fetch_waits_ms: list[int] = []

    def poll(self, timeout_ms: int = 0) -> dict[Any, list[Any]]:
        self.poll_waits_ms.append(timeout_ms)
        self.clock.now += self.poll_takes_s
        count = self.records.pop(0) if self.records else 0
        return {("erasure.tasks.brevo.v1", 0): ["record"] * count} if count else {}

    def set_fetch_max_wait_ms(self, wait_ms: int) -> None:
        self.fetch_waits_ms.append(wait_ms)


def test_a_lane_polls_briefly_until_it_has_been_idle_a_while_then_long() -> None:
    clock = Clock()
    backoff, consumer = IdleBackoff(clock=clock), ScriptedConsumer(clock, [])
    for _ in range(int(IDLE_AFTER_S) + 3):
        backoff.poll(consumer, pending=0)
    short = consumer.poll_waits_ms[:int(IDLE_AFTER_S)]
    assert set(short) == {SHORT_POLL_MS}, "the first ten seconds with nothing to do still poll often"
    assert consumer.poll_waits_ms[-1] == LONG_POLL_MS
    assert consumer.fetch_waits_ms == [LONG_FETCH_WAIT_MS], "the broker is asked once to hold fetches longer"


def test_records_put_an_idle_lane_back_on_short_polls_at_once() -> None:
    clock = Clock()
    backoff, consumer = IdleBackoff(clock=clock), ScriptedConsumer(clock, [0] * 15 + [3])
    for _ in range(16):
        backoff.poll(consumer, pending=0)
    assert consumer.poll_waits_ms[-1] == LONG_POLL_MS, "idle when the records came"
    assert backoff.timeout_ms() == SHORT_POLL_MS, "the very next poll is short"
    assert consumer.fetch_waits_ms[-1] == SHORT_POLL_MS and len(consumer.fetch_waits_ms) == 2


def test_work_in_hand_keeps_a_lane_busy_though_no_record_comes() -> None:
    clock = Clock()
    backoff, consumer = IdleBackoff(clock=clock), ScriptedConsumer(clock, [])
    for _ in range(30):  # a task running for 30 s: its result is committed on the next short turn
        backoff.poll(consumer, pending=1)
    assert set(consumer.poll_waits_ms) == {SHORT_POLL_MS} and consumer.fetch_waits_ms == []


def test_a_consumer_without_a_fetch_wait_setter_is_polled_all_the_same() -> None:
    class Plain:
        def poll(self, timeout_ms: int = 0) -> dict[Any, list[Any]]:
            clock.now += 1.0
            return {}

    clock = Clock()
    backoff = IdleBackoff(clock=clock)
    for _ in range(15):
        backoff.poll(Plain(), pending=0)
    assert backoff.idle and backoff.timeout_ms() == LONG_POLL_MS


def test_the_faust_worker_fetch_wait_follows_its_events() -> None:
    from types import SimpleNamespace

    from pipeline.streaming.idle_fetch import IdleFetchWait
    from pipeline.streaming.transport import FETCH_MAX_WAIT_MS

    clock = Clock()
    fetcher = SimpleNamespace(_fetch_max_wait_ms=FETCH_MAX_WAIT_MS)
    app = SimpleNamespace(consumer=SimpleNamespace(_thread=SimpleNamespace(_consumer=SimpleNamespace(
        _fetcher=fetcher))))
    wait = IdleFetchWait(app, IdleBackoff(short_fetch_wait_ms=FETCH_MAX_WAIT_MS, clock=clock))
    for _ in range(int(IDLE_AFTER_S) + 1):  # the heartbeat timer, once a second, nothing coming
        clock.now += 1.0
        wait.tick()
    assert fetcher._fetch_max_wait_ms == LONG_FETCH_WAIT_MS
    wait.saw(1)  # an event reached an agent
    assert fetcher._fetch_max_wait_ms == FETCH_MAX_WAIT_MS


def test_a_worker_not_yet_consuming_is_left_alone() -> None:
    from types import SimpleNamespace

    from pipeline.streaming.idle_fetch import IdleFetchWait

    clock = Clock()
    wait = IdleFetchWait(SimpleNamespace(consumer=SimpleNamespace()), IdleBackoff(clock=clock))
    clock.now += IDLE_AFTER_S + 1
    wait.tick()  # no consumer thread yet: nothing to set, nothing raised
    assert wait.wait_ms == LONG_FETCH_WAIT_MS
