"""Pacing: a lane stays within its processor's published limit, and the processor's answers win."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from connectors.base import RetryableError, TaskContext
from connectors.pacing import PACERS, PUBLISHED_LIMITS, Pacer, RateLimit
from connectors.processors.brevo import BrevoSettings
from connectors.registry import build_connector
from pipeline.devstack.fake_brevo import FakeBrevo
from pipeline.devstack.fake_server import TokenBucket
from pipeline.register import load_systems
from schemas import SubjectIdentities
from schemas.models import Identity


class ManualClock:
    def __init__(self) -> None:
        self.now_s = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now_s

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now_s += seconds


def test_calls_beyond_the_limit_wait_for_the_oldest_to_leave_the_window() -> None:
    clock = ManualClock()
    pacer = Pacer(RateLimit(requests=3, per_s=1.0), clock=clock, sleep=clock.sleep)
    for _ in range(3):
        pacer.release(pacer.acquire("brevo", max_wait_s=30))
    assert clock.slept == []
    pacer.release(pacer.acquire("brevo", max_wait_s=30))
    assert clock.slept == [pytest.approx(1.02)]


def test_a_window_counts_from_the_answer_so_a_slow_call_keeps_its_slot_longer() -> None:
    clock = ManualClock()
    pacer = Pacer(RateLimit(requests=1, per_s=1.0), clock=clock, sleep=clock.sleep)
    slot = pacer.acquire("brevo", max_wait_s=30)
    clock.now_s += 0.7  # the processor takes 0.7 s to answer
    pacer.release(slot)
    pacer.acquire("brevo", max_wait_s=30)
    assert clock.slept == [pytest.approx(1.02)]


def test_a_wait_longer_than_the_callers_bound_raises_with_the_wait() -> None:
    clock = ManualClock()
    pacer = Pacer(RateLimit(requests=1, per_s=60.0), clock=clock, sleep=clock.sleep)
    pacer.release(pacer.acquire("sendgrid", max_wait_s=30))
    with pytest.raises(RetryableError) as raised:
        pacer.acquire("sendgrid", max_wait_s=30)
    assert raised.value.retry_after_s == pytest.approx(61.2)
    assert clock.slept == []


def test_a_processors_long_hold_is_the_callers_to_wait_out_and_a_short_one_is_slept() -> None:
    clock = ManualClock()
    pacer = Pacer(None, clock=clock, sleep=clock.sleep)
    pacer.hold(3600)
    with pytest.raises(RetryableError) as raised:
        pacer.acquire("ga4", max_wait_s=30)
    assert raised.value.retry_after_s == pytest.approx(3600)
    clock.now_s += 3599.5
    pacer.acquire("ga4", max_wait_s=30)
    assert clock.slept == [pytest.approx(0.5)]


def test_an_answer_saying_nothing_remains_holds_the_lane_until_the_reset() -> None:
    clock = ManualClock()
    pacer = Pacer(None, clock=clock, sleep=clock.sleep)
    pacer.observe({"X-Sib-Ratelimit-Remaining": "3", "x-sib-ratelimit-reset": "1"})
    pacer.acquire("brevo", max_wait_s=30)
    assert clock.slept == []
    pacer.observe({"X-Sib-Ratelimit-Remaining": "0", "x-sib-ratelimit-reset": "1"})
    pacer.acquire("brevo", max_wait_s=30)
    assert clock.slept == [pytest.approx(1.0)]


def test_every_published_limit_names_its_source() -> None:
    for connector_type, limit in PUBLISHED_LIMITS.items():
        assert limit.source and limit.source != "systems.yaml", connector_type


def _erase_many(url: str, emails: list[str], threads: int) -> list[str]:
    """Erase each e-mail through one Brevo connector shared by `threads` threads; the outcomes."""
    connector = build_connector("newsletter", "brevo", BrevoSettings(base_url=url, api_key_env="PACING_KEY"),
                                RateLimit(requests=20, per_s=0.5))
    outcomes: list[str] = []
    lock = threading.Lock()
    queue = list(emails)

    def lane() -> None:
        while True:
            with lock:
                if not queue:
                    return
                email = queue.pop()
            subject = SubjectIdentities(identities=[Identity(identity_type="email", identity_value=email)])
            result = connector.erase(subject, TaskContext(request_id="r", system="newsletter", attempt=1))
            with lock:
                outcomes.append(result.status)

    workers = [threading.Thread(target=lane) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    connector.close()
    return outcomes


def test_a_burst_through_paced_lanes_meets_no_throttle(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PACING_KEY", "k")
    fake = FakeBrevo({"k"}, limit_per_window=10_000)
    url = fake.start()
    try:
        emails = [f"person{n}@example.org" for n in range(90)]
        for email in emails:
            fake.handle("POST", "/v3/contacts", {}, {"api-key": "k"}, {"email": email})
        fake.bucket = TokenBucket(20, 0.5)  # the limit the lanes are paced at, enforced from now on
        outcomes = _erase_many(url, emails, threads=4)
    finally:
        fake.stop()
    assert outcomes.count("erased") == 90
    assert fake.contact_count() == 0
    assert fake.state.responses[429] == 0


def test_a_throttle_holds_every_lane_of_the_system(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PACING_KEY", "k")
    fake = FakeBrevo({"k"})
    url = fake.start()
    try:
        settings = BrevoSettings(base_url=url, api_key_env="PACING_KEY")
        connector = build_connector("newsletter", "brevo", settings)
        fake.control("faults", {"status": 429, "reset_s": 600})
        subject = SubjectIdentities(identities=[Identity(identity_type="email",
                                                         identity_value="a@example.org")])
        with pytest.raises(RetryableError) as first:
            connector.erase(subject, TaskContext(request_id="r", system="newsletter", attempt=1))
        answered = sum(fake.state.responses.values())
        with pytest.raises(RetryableError) as second:  # another task of the lane: nothing is sent
            connector.erase(subject, TaskContext(request_id="s", system="newsletter", attempt=1))
    finally:
        fake.stop()
    assert first.value.retry_after_s == pytest.approx(600, abs=1)
    assert second.value.retry_after_s == pytest.approx(600, abs=2)
    assert sum(fake.state.responses.values()) == answered
    assert PACERS.for_system("newsletter").limit == PUBLISHED_LIMITS["brevo"]


def test_a_bad_rate_limit_in_the_register_names_the_key(tmp_path: Path) -> None:
    from connectors.base import ConfigError

    path = tmp_path / "systems.yaml"
    path.write_text(
        "systems:\n"
        "  - id: newsletter\n    kind: processor\n    connector: {type: brevo}\n"
        "    data_categories: [contact]\n    location: EU\n"
        "    rate_limit: {requests: 0, per_s: 1}\n")
    with pytest.raises(ConfigError) as raised:
        load_systems(path)
    assert "rate_limit.requests" in str(raised.value)
    assert str(path) in str(raised.value)
