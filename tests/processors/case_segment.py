from __future__ import annotations

import hashlib
from typing import Any

from pipeline.devstack.fake_server import FakeProcessor
from schemas import Identity, SubjectIdentities
from tests.fakes.segment import FakeSegment
from tests.processors.common import inject

TOKEN = "sgp_case-segment-token"


def user_id(email: str) -> str:
    """The userId the site gave this person in Segment (derived, so the case can seed and observe)."""
    return "usr_" + hashlib.sha256(email.encode()).hexdigest()[:16]


def segment_subject(email: str) -> SubjectIdentities:
    return SubjectIdentities(identities=[Identity(identity_type="email", identity_value=email),
                                         Identity(identity_type="user_id", identity_value=user_id(email))])


class Case:
    type = "segment"
    secret_env = {"CASE_SEGMENT_TOKEN": TOKEN}
    auth_env = "CASE_SEGMENT_TOKEN"
    supports_not_found = False  # a regulation for an unknown userId runs and finishes like any other
    asynchronous = True
    final_status = "erased"
    subject = staticmethod(segment_subject)

    def start_fake(self) -> FakeProcessor:
        fake = FakeSegment({TOKEN}, polls_to_finish=None)  # regulations end on finish_jobs only
        fake.start()
        return fake

    def settings(self, fake: FakeProcessor) -> dict[str, Any]:
        return {"base_url": fake.url, "token_env": "CASE_SEGMENT_TOKEN"}

    def seed(self, fake: FakeProcessor, email: str) -> None:
        assert isinstance(fake, FakeSegment)
        fake.add_user(user_id(email))

    def holds_data(self, fake: FakeProcessor, email: str) -> bool:
        assert isinstance(fake, FakeSegment)
        return fake.holds(user_id(email))

    def rate_limit_next(self, fake: FakeProcessor) -> float | None:
        inject(fake, 429, reset_s=2)
        return 2.0  # Retry-After, whole seconds

    def fail_next(self, fake: FakeProcessor, status: int) -> None:
        inject(fake, status)

    def finish_jobs(self, fake: FakeProcessor) -> None:
        assert isinstance(fake, FakeSegment)
        fake.finish_jobs()
