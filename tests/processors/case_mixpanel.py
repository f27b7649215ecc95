from __future__ import annotations

import hashlib
from typing import Any

from pipeline.devstack.fake_server import FakeProcessor
from schemas import Identity, SubjectIdentities
from tests.fakes.mixpanel import FakeMixpanel
from tests.processors.common import inject

PROJECT_TOKEN = "case0mixpanel0project0token0000"
OAUTH_TOKEN = "mp-gdpr-oauth-case-token"


def distinct_id(email: str) -> str:
    """The user_id the site identifies this person with in Mixpanel (its distinct_id)."""
    return "u-" + hashlib.sha256(email.encode()).hexdigest()[:20]


def mixpanel_subject(email: str) -> SubjectIdentities:
    return SubjectIdentities(identities=[
        Identity(identity_type="email", identity_value=email),
        Identity(identity_type="user_id", identity_value=distinct_id(email))])


class Case:
    type = "mixpanel"
    secret_env = {"CASE_MIXPANEL_PROJECT_TOKEN": PROJECT_TOKEN, "CASE_MIXPANEL_OAUTH": OAUTH_TOKEN}
    auth_env = "CASE_MIXPANEL_OAUTH"
    # Mixpanel's statuses describe the task, never the person: a task for ids it holds nothing
    # for ends SUCCESS, and NOT_FOUND means the task is lost (tests/test_mixpanel_specifics.py).
    supports_not_found = False
    asynchronous = True
    final_status = "erased"
    subject = staticmethod(mixpanel_subject)

    def start_fake(self) -> FakeProcessor:
        # Mixpanel allows 1 request a second; the shared scenarios make several calls within a
        # second, so the case lifts the limit (tests/test_mixpanel_specifics.py exercises 1 rps).
        fake = FakeMixpanel(PROJECT_TOKEN, {OAUTH_TOKEN}, requests_per_second=1000)
        fake.start()
        return fake

    def settings(self, fake: FakeProcessor) -> dict[str, Any]:
        return {"base_url": fake.url, "project_token_env": "CASE_MIXPANEL_PROJECT_TOKEN",
                "oauth_token_env": "CASE_MIXPANEL_OAUTH"}

    def seed(self, fake: FakeProcessor, email: str) -> None:
        assert isinstance(fake, FakeMixpanel)
        fake.add_user(distinct_id(email))

    def holds_data(self, fake: FakeProcessor, email: str) -> bool:
        assert isinstance(fake, FakeMixpanel)
        return fake.holds(distinct_id(email))

    def rate_limit_next(self, fake: FakeProcessor) -> float | None:
        inject(fake, 429)
        return None  # a bare 429: no wait announced, the retry policy backs off

    def fail_next(self, fake: FakeProcessor, status: int) -> None:
        inject(fake, status)

    def finish_jobs(self, fake: FakeProcessor) -> None:
        assert isinstance(fake, FakeMixpanel)
        fake.finish_jobs()
