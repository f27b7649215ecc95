from __future__ import annotations

from typing import Any

from pipeline.devstack.fake_server import FakeProcessor
from tests.fakes.sendgrid import FakeSendgrid
from tests.processors.common import email_subject, inject

KEY = "SG.case-key.sendgrid"


class Case:
    type = "sendgrid"
    secret_env = {"CASE_SENDGRID_KEY": KEY}
    auth_env = "CASE_SENDGRID_KEY"
    supports_not_found = True
    asynchronous = True
    final_status = "erased"
    subject = staticmethod(email_subject)

    def start_fake(self) -> FakeProcessor:
        fake = FakeSendgrid({KEY}, polls_to_complete=None)  # jobs end on finish_jobs only
        fake.start()
        return fake

    def settings(self, fake: FakeProcessor) -> dict[str, Any]:
        return {"base_url": fake.url, "api_key_env": "CASE_SENDGRID_KEY"}

    def seed(self, fake: FakeProcessor, email: str) -> None:
        assert isinstance(fake, FakeSendgrid)
        fake.add_contact(email)

    def holds_data(self, fake: FakeProcessor, email: str) -> bool:
        assert isinstance(fake, FakeSendgrid)
        return fake.has_contact(email)

    def rate_limit_next(self, fake: FakeProcessor) -> float | None:
        inject(fake, 429, reset_s=3)
        return 3.0  # from X-RateLimit-Reset (epoch seconds), give or take a second

    def fail_next(self, fake: FakeProcessor, status: int) -> None:
        inject(fake, status)

    def finish_jobs(self, fake: FakeProcessor) -> None:
        assert isinstance(fake, FakeSendgrid)
        fake.finish_jobs()
