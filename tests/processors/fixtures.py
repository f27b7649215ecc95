"""The fixtures every per-processor test shares: one case per processor connector, its fake running.

Registered in tests/conftest.py; a test module that defines a `fake` of its own (one processor's
specifics) uses that one instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.processors import load_cases
from tests.processors.common import ProcessorCase

CASES: list[ProcessorCase] = load_cases()


@pytest.fixture(params=CASES, ids=[c.type for c in CASES])
def case(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> ProcessorCase:
    """One processor's case, its secrets in the environment for the test's duration."""
    chosen: ProcessorCase = request.param
    for name, value in chosen.secret_env.items():
        monkeypatch.setenv(name, value)
    return chosen


@pytest.fixture
def fake(case: ProcessorCase) -> Iterator[Any]:
    server = case.start_fake()
    yield server
    server.stop()
