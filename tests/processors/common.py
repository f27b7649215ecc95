"""What a processor case provides to the shared conformance tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import requests

from pipeline.devstack.fake_server import FakeProcessor
from schemas import Identity, SubjectIdentities


class ProcessorCase(Protocol):
    """One processor: its fake, its connector settings, and how to observe the fake."""

    type: str                      # the connector type in systems.yaml
    secret_env: dict[str, str]     # environment variable -> valid secret value
    auth_env: str                  # the variable a bad-credentials error must name
    supports_not_found: bool       # False when the API cannot tell (upserts)
    asynchronous: bool             # True when erasure is a job polled to its end
    final_status: str              # what erasing a known person ends as: erased, or held

    def start_fake(self) -> FakeProcessor: ...

    def settings(self, fake: FakeProcessor) -> dict[str, Any]: ...

    def seed(self, fake: FakeProcessor, email: str) -> None: ...

    def holds_data(self, fake: FakeProcessor, email: str) -> bool: ...

    def subject(self, email: str) -> SubjectIdentities: ...

    def rate_limit_next(self, fake: FakeProcessor) -> float | None:
        """Make the next call rate-limited as the processor does; return the wait it announces."""
        ...

    def fail_next(self, fake: FakeProcessor, status: int) -> None: ...

    def finish_jobs(self, fake: FakeProcessor) -> None:
        """Asynchronous processors: let the fake's jobs reach their end."""
        ...


def email_subject(email: str) -> SubjectIdentities:
    return SubjectIdentities(identities=[Identity(identity_type="email", identity_value=email)])


def inject(fake: FakeProcessor, status: int, count: int = 1, reset_s: float = 1) -> None:
    requests.post(f"{fake.url}/__fake__/faults", json={"status": status, "count": count, "reset_s": reset_s},
                  timeout=5).raise_for_status()


@dataclass
class Recorded:
    waits: list[float] = field(default_factory=list)
