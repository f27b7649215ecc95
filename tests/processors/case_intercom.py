from __future__ import annotations

from typing import Any

from pipeline.devstack.fake_server import FakeProcessor
from tests.fakes.intercom import FakeIntercom
from tests.processors.common import email_subject, inject

TOKEN = "dG9rOmNhc2UtaW50ZXJjb20="


class Case:
    type = "intercom"
    secret_env = {"CASE_INTERCOM_TOKEN": TOKEN}
    auth_env = "CASE_INTERCOM_TOKEN"
    supports_not_found = True
    asynchronous = False
    final_status = "erased"
    subject = staticmethod(email_subject)

    def start_fake(self) -> FakeProcessor:
        fake = FakeIntercom({TOKEN})
        fake.start()
        return fake

    def settings(self, fake: FakeProcessor) -> dict[str, Any]:
        return {"base_url": fake.url, "secrets": {"token": "CASE_INTERCOM_TOKEN"}}

    def seed(self, fake: FakeProcessor, email: str) -> None:
        assert isinstance(fake, FakeIntercom)
        fake.add_contact(email)

    def holds_data(self, fake: FakeProcessor, email: str) -> bool:
        assert isinstance(fake, FakeIntercom)
        return fake.has_contact(email)

    def rate_limit_next(self, fake: FakeProcessor) -> float | None:
        inject(fake, 429, reset_s=3)
        return 3.0  # from X-RateLimit-Reset (unix time), give or take a second

    def fail_next(self, fake: FakeProcessor, status: int) -> None:
        inject(fake, status)

    def finish_jobs(self, fake: FakeProcessor) -> None:
        return None
