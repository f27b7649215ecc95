from __future__ import annotations

from typing import Any

from pipeline.devstack.fake_server import FakeProcessor
from tests.fakes.auth0 import FakeAuth0
from tests.processors.common import email_subject, inject

CLIENT_ID = "case0Auth0ClientIdXq3Vw8"
CLIENT_SECRET = "case-auth0-client-secret-Zr7mT2pLk9"


class Case:
    type = "auth0"
    secret_env = {"CASE_AUTH0_CLIENT_ID": CLIENT_ID, "CASE_AUTH0_CLIENT_SECRET": CLIENT_SECRET}
    auth_env = "CASE_AUTH0_CLIENT_SECRET"
    supports_not_found = True  # through users-by-email: the delete answers 204 for anyone
    asynchronous = False
    final_status = "erased"
    subject = staticmethod(email_subject)

    def start_fake(self) -> FakeProcessor:
        fake = FakeAuth0({CLIENT_ID: CLIENT_SECRET})
        fake.start()
        return fake

    def settings(self, fake: FakeProcessor) -> dict[str, Any]:
        return {"base_url": fake.url, "client_id_env": "CASE_AUTH0_CLIENT_ID",
                "client_secret_env": "CASE_AUTH0_CLIENT_SECRET"}

    def seed(self, fake: FakeProcessor, email: str) -> None:
        assert isinstance(fake, FakeAuth0)
        fake.add_user(email)

    def holds_data(self, fake: FakeProcessor, email: str) -> bool:
        assert isinstance(fake, FakeAuth0)
        return fake.has_user(email)

    def rate_limit_next(self, fake: FakeProcessor) -> float | None:
        inject(fake, 429, reset_s=3)
        return 3.0  # x-ratelimit-reset is a unix time: give or take a second

    def fail_next(self, fake: FakeProcessor, status: int) -> None:
        inject(fake, status)

    def finish_jobs(self, fake: FakeProcessor) -> None:
        return None
