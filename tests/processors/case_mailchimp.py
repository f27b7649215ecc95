from __future__ import annotations

from typing import Any

from pipeline.devstack.fake_server import FakeProcessor
from tests.fakes.mailchimp import FakeMailchimp
from tests.processors.common import email_subject, inject

KEY = "0123456789abcdef0123456789abcdef-us14"


class Case:
    type = "mailchimp"
    secret_env = {"CASE_MAILCHIMP_KEY": KEY}
    auth_env = "CASE_MAILCHIMP_KEY"
    supports_not_found = True
    asynchronous = False
    final_status = "erased"
    subject = staticmethod(email_subject)

    def start_fake(self) -> FakeProcessor:
        fake = FakeMailchimp({KEY})
        fake.start()
        fake.add_list("Newsletter")
        fake.add_list("Customers")
        return fake

    def settings(self, fake: FakeProcessor) -> dict[str, Any]:
        return {"base_url": fake.url, "api_key_env": "CASE_MAILCHIMP_KEY"}

    def seed(self, fake: FakeProcessor, email: str) -> None:
        assert isinstance(fake, FakeMailchimp)
        for list_id in fake.lists:  # the person is in both lists: both must be erased
            fake.add_member(list_id, email)

    def holds_data(self, fake: FakeProcessor, email: str) -> bool:
        assert isinstance(fake, FakeMailchimp)
        return bool(fake.holds(email))

    def rate_limit_next(self, fake: FakeProcessor) -> float | None:
        inject(fake, 429)
        return None  # Mailchimp gives no wait hint: the retry policy backs off

    def fail_next(self, fake: FakeProcessor, status: int) -> None:
        inject(fake, status)

    def finish_jobs(self, fake: FakeProcessor) -> None:
        return None
