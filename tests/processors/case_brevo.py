from __future__ import annotations

from typing import Any

import requests

from pipeline.devstack.fake_brevo import FakeBrevo
from pipeline.devstack.fake_server import FakeProcessor
from tests.processors.common import email_subject, inject

KEY = "xkeysib-case-key"


class Case:
    type = "brevo"
    secret_env = {"CASE_BREVO_KEY": KEY}
    auth_env = "CASE_BREVO_KEY"
    supports_not_found = True
    asynchronous = False
    final_status = "erased"
    subject = staticmethod(email_subject)

    def start_fake(self) -> FakeProcessor:
        fake = FakeBrevo({KEY})
        fake.start()
        return fake

    def settings(self, fake: FakeProcessor) -> dict[str, Any]:
        return {"base_url": fake.url, "api_key_env": "CASE_BREVO_KEY"}

    def seed(self, fake: FakeProcessor, email: str) -> None:
        requests.post(f"{fake.url}/v3/contacts", headers={"api-key": KEY}, json={"email": email},
                      timeout=5).raise_for_status()

    def holds_data(self, fake: FakeProcessor, email: str) -> bool:
        assert isinstance(fake, FakeBrevo)
        return fake.has_contact(email)

    def rate_limit_next(self, fake: FakeProcessor) -> float | None:
        inject(fake, 429, reset_s=2)
        return 2.0

    def fail_next(self, fake: FakeProcessor, status: int) -> None:
        inject(fake, status)

    def finish_jobs(self, fake: FakeProcessor) -> None:
        return None
