"""Contract validation ON for every test: each exchange a fake serves is checked against its
processor's contract, and a test whose exchanges broke one fails, listing each violation.

Registered by tests/conftest.py. Recording starts before the test's fixtures are set up (so HTTP
seeding is checked too) and ends after they are torn down; what teardown's exchanges break fails
the teardown. A test that must break a contract on purpose says so with `@pytest.mark.contract_exempt("why")`.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Generator
from typing import Any

import pytest

from pipeline.devstack.fake_server import Exchange, FakeProcessor, observe_exchanges
from tests.contracts.validator import Violation, check

RECORDER_KEY = pytest.StashKey["Recorder"]()
MAX_LISTED = 20


class Recorder:
    """The violations found in the exchanges of one test."""

    def __init__(self) -> None:
        self.violations: list[Violation] = []
        self.failures: list[str] = []  # the validator itself failed on an exchange
        self.exchanges = 0
        self._lock = threading.Lock()
        self.stop = observe_exchanges(self._observe)

    def found(self) -> list[str]:
        with self._lock:
            return [str(v) for v in dict.fromkeys(self.violations)] + self.failures

    def _observe(self, fake: FakeProcessor, exchange: Exchange) -> None:
        try:
            found = check(exchange)
        except Exception as exc:  # a broken contract file or validator must fail the test, not the fake
            with self._lock:
                self.failures.append(f"{exchange.fake}: {exchange.method}: {type(exc).__name__}: {exc}"[:400])
            return
        with self._lock:
            self.exchanges += 1
            self.violations.extend(found)

    def report(self, reported: Collection[str] = ()) -> str | None:
        """The violations found, leaving out those `reported` already."""
        found = [line for line in self.found() if line not in reported]
        if not found:
            return None
        listed = "\n".join(f"  - {line}" for line in found[:MAX_LISTED])
        more = f"\n  ... and {len(found) - MAX_LISTED} more" if len(found) > MAX_LISTED else ""
        return f"{len(found)} contract violation(s) in the exchanges with processor fakes:\n{listed}{more}"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "contract_exempt(reason): exchanges with fakes are not checked "
                                       "against the processors' contracts")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, Any, Any]:
    if item.get_closest_marker("contract_exempt") is None:
        item.stash[RECORDER_KEY] = Recorder()
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, Any, Any]:
    recorder = item.stash.get(RECORDER_KEY, None)
    try:
        result = yield
    except BaseException:
        report = recorder.report() if recorder is not None else None
        if report:
            item.add_report_section("call", "contracts", report)
        raise
    report = recorder.report() if recorder is not None else None
    if report:
        pytest.fail(report, pytrace=False)
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, Any, Any]:
    recorder = item.stash.get(RECORDER_KEY, None)
    reported = set(recorder.found()) if recorder is not None else set()
    try:
        result = yield
    finally:
        if recorder is not None:
            recorder.stop()
    # Exchanges made while fixtures were torn down (clean-up calls) are held to the contract too.
    report = recorder.report(reported) if recorder is not None else None
    if report:
        pytest.fail(f"during teardown: {report}", pytrace=False)
    return result
