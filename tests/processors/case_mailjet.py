from __future__ import annotations

from typing import Any

from pipeline.devstack.fake_server import FakeProcessor
from tests.fakes.mailjet import FakeMailjet
from tests.processors.common import email_subject, inject

PUBLIC = "5f3a9c0d1e2b4a6f8c7d9e0a1b2c3d4e"
PRIVATE = "9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b"


class Case:
    type = "mailjet"
    secret_env = {"CASE_MAILJET_PUBLIC": PUBLIC, "CASE_MAILJET_PRIVATE": PRIVATE}
    auth_env = "CASE_MAILJET_PRIVATE"
    supports_not_found = True
    asynchronous = False
    final_status = "erased"  # anonymised at once; the anonymised record is purged after 30 days
    subject = staticmethod(email_subject)

    def start_fake(self) -> FakeProcessor:
        fake = FakeMailjet({(PUBLIC, PRIVATE)})
        fake.start()
        return fake

    def settings(self, fake: FakeProcessor) -> dict[str, Any]:
        return {"base_url": fake.url,
                "secrets": {"api_key": "CASE_MAILJET_PUBLIC", "secret_key": "CASE_MAILJET_PRIVATE"}}

    def seed(self, fake: FakeProcessor, email: str) -> None:
        assert isinstance(fake, FakeMailjet)
        fake.add_contact(email, name="Case Person")

    def holds_data(self, fake: FakeProcessor, email: str) -> bool:
        """A contact still carrying the address; an anonymised record keeps only its ID and settings."""
        assert isinstance(fake, FakeMailjet)
        return fake.has_contact(email)

    def rate_limit_next(self, fake: FakeProcessor) -> float | None:
        inject(fake, 429)
        return None  # undocumented signal: a bare 429, so the retry policy backs off

    def fail_next(self, fake: FakeProcessor, status: int) -> None:
        inject(fake, status)

    def finish_jobs(self, fake: FakeProcessor) -> None:
        return None
