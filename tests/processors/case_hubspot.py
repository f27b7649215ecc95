from __future__ import annotations

from typing import Any

from pipeline.devstack.fake_server import FakeProcessor
from tests.fakes.hubspot import FakeHubSpot
from tests.processors.common import email_subject, inject

TOKEN = "pat-eu1-case-hubspot-token"


class Case:
    type = "hubspot"
    secret_env = {"CASE_HUBSPOT_TOKEN": TOKEN}
    auth_env = "CASE_HUBSPOT_TOKEN"
    supports_not_found = True  # through the search: gdpr-delete by e-mail answers 204 for anyone
    asynchronous = False
    final_status = "erased"
    subject = staticmethod(email_subject)

    def start_fake(self) -> FakeProcessor:
        fake = FakeHubSpot({TOKEN})  # documented behaviour only: no Retry-After, no interval headers
        fake.start()
        return fake

    def settings(self, fake: FakeProcessor) -> dict[str, Any]:
        return {"base_url": fake.url, "secrets": {"token": "CASE_HUBSPOT_TOKEN"}}

    def seed(self, fake: FakeProcessor, email: str) -> None:
        assert isinstance(fake, FakeHubSpot)
        fake.add_contact(email)

    def holds_data(self, fake: FakeProcessor, email: str) -> bool:
        assert isinstance(fake, FakeHubSpot)
        return fake.has_contact(email)

    def rate_limit_next(self, fake: FakeProcessor) -> float | None:
        inject(fake, 429, reset_s=2)
        return None  # a SECONDLY 429 names no wait that HubSpot documents: jittered backoff

    def fail_next(self, fake: FakeProcessor, status: int) -> None:
        inject(fake, status)

    def finish_jobs(self, fake: FakeProcessor) -> None:
        return None
