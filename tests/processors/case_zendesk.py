from __future__ import annotations

from typing import Any

from pipeline.devstack.fake_server import FakeProcessor
from tests.fakes.zendesk import FakeZendesk
from tests.processors.common import email_subject, inject

AGENT = "dpo-agent@site.example"
TOKEN = "case-zendesk-api-token-6wiIBWbGkBMo1mRDMuVwkw1EPsNkeUj95PIz2akv"


class Case:
    type = "zendesk"
    secret_env = {"CASE_ZENDESK_EMAIL": AGENT, "CASE_ZENDESK_TOKEN": TOKEN}
    auth_env = "CASE_ZENDESK_TOKEN"
    supports_not_found = True
    asynchronous = False
    final_status = "erased"
    subject = staticmethod(email_subject)

    def start_fake(self) -> FakeProcessor:
        fake = FakeZendesk(AGENT, {TOKEN})
        fake.start()
        return fake

    def settings(self, fake: FakeProcessor) -> dict[str, Any]:
        return {"base_url": fake.url, "email_env": "CASE_ZENDESK_EMAIL",
                "api_token_env": "CASE_ZENDESK_TOKEN"}

    def seed(self, fake: FakeProcessor, email: str) -> None:
        assert isinstance(fake, FakeZendesk)
        fake.add_user(email, tickets=1)

    def holds_data(self, fake: FakeProcessor, email: str) -> bool:
        assert isinstance(fake, FakeZendesk)
        return fake.has_user(email)  # active or soft-deleted: both still hold the e-mail

    def rate_limit_next(self, fake: FakeProcessor) -> float | None:
        inject(fake, 429, reset_s=2)
        return 2.0  # Retry-After, in seconds

    def fail_next(self, fake: FakeProcessor, status: int) -> None:
        inject(fake, status)

    def finish_jobs(self, fake: FakeProcessor) -> None:
        return None
