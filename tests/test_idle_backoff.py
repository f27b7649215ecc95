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
    each poll's wait, and the pauses taken before each poll (the backoff's `sleep`)."""

    def __init__(self, clock: Clock, records: list[int], poll_takes_s: float = 0.1) -> None:
        self.clock, self.records, self.poll_takes_s = clock, records, poll_takes_s
        self.poll_waits_ms: list[int] = []
        self.pauses_s: list[float] = []

    def poll(self, timeout_ms: int = 0) -> dict[Any, list[Any]]:
        self.poll_waits_ms.append(timeout_ms)
        self.clock.now += self.poll_takes_s
        count = self.records.pop(0) if self.records else 0
        return {("erasure.tasks.brevo.v1", 0): ["record"] * count} if count else {}

    def sleep(self, seconds: float) -> None:
        self.pauses_s.append(seconds)
        self.clock.now += seconds


def lane(clock: Clock, records: list[int]) -> tuple[IdleBackoff, ScriptedConsumer]:
    consumer = ScriptedConsumer(clock, records)
    return IdleBackoff(clock=clock, sleep=consumer.sleep), consumer


def test_a_lane_polls_often_until_it_has_been_idle_a_while_then_pauses_between_brief_polls() -> None:
    clock = Clock()
    backoff, consumer = lane(clock, [])
    while not consumer.pauses_s:
        backoff.poll(consumer, pending=0)
    assert clock.now - 1000.0 >= IDLE_AFTER_S, "the first ten seconds with nothing to do poll without pause"
    for _ in range(3):
        backoff.poll(consumer, pending=0)
    assert consumer.pauses_s == [LONG_POLL_MS / 1000] * 4
    assert set(consumer.poll_waits_ms) == {SHORT_POLL_MS}, \
        "idle, the polls stay brief: nothing is held at the broker during the pause"


def test_records_put_an_idle_lane_back_on_polls_without_pause_at_once() -> None:
    clock = Clock()
    backoff, consumer = lane(clock, [0] * 105 + [3])
    for _ in range(106):
        backoff.poll(consumer, pending=0)
    assert consumer.pauses_s, "idle when the records came"
    pauses = len(consumer.pauses_s)
    assert backoff.pause_ms() == 0, "the very next poll comes at once"
    backoff.poll(consumer, pending=0)
    assert len(consumer.pauses_s) == pauses


def test_work_in_hand_keeps_a_lane_busy_though_no_record_comes() -> None:
    clock = Clock()
    backoff, consumer = lane(clock, [])
    for _ in range(300):  # a task running for 30 s: its result is committed on the next turn
        backoff.poll(consumer, pending=1)
    assert consumer.pauses_s == [] and set(consumer.poll_waits_ms) == {SHORT_POLL_MS}


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
