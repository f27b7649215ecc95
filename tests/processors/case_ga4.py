from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import Any

from pipeline.devstack.fake_server import FakeProcessor
from schemas import Identity, SubjectIdentities
from tests.fakes.ga4 import FakeGa4, service_account_key
from tests.processors.common import inject

PROPERTY = "123456789"
ACCOUNT = "erasure@case-project.iam.gserviceaccount.com"
KEY_FILE, PUBLIC_KEY = service_account_key(Path(tempfile.mkdtemp(prefix="case-ga4-")), ACCOUNT,
                                           "https://oauth2.googleapis.com/token")


def user_id_of(email: str) -> str:
    """The site's own user id for a person: GA4 never sees the e-mail."""
    return "u-" + hashlib.sha256(email.encode()).hexdigest()[:16]


def ga4_subject(email: str) -> SubjectIdentities:
    return SubjectIdentities(identities=[Identity(identity_type="email", identity_value=email),
                                         Identity(identity_type="user_id", identity_value=user_id_of(email))])


class Case:
    type = "ga4"
    secret_env = {"CASE_GA4_KEY_FILE": str(KEY_FILE)}
    auth_env = "CASE_GA4_KEY_FILE"
    supports_not_found = False  # an upsert cannot tell an unknown user
    asynchronous = False
    final_status = "erased"
    subject = staticmethod(ga4_subject)

    def start_fake(self) -> FakeProcessor:
        fake = FakeGa4(service_accounts={ACCOUNT: (PUBLIC_KEY, {PROPERTY})})
        fake.start()
        return fake

    def settings(self, fake: FakeProcessor) -> dict[str, Any]:
        assert isinstance(fake, FakeGa4)
        return {"base_url": fake.url, "token_uri": fake.token_url, "key_file_env": "CASE_GA4_KEY_FILE",
                "property_id": PROPERTY}

    def seed(self, fake: FakeProcessor, email: str) -> None:
        assert isinstance(fake, FakeGa4)
        fake.collect(PROPERTY, user_id_of(email))

    def holds_data(self, fake: FakeProcessor, email: str) -> bool:
        assert isinstance(fake, FakeGa4)
        return fake.holds(PROPERTY, user_id_of(email))

    def rate_limit_next(self, fake: FakeProcessor) -> float | None:
        inject(fake, 403)  # 403 userRateLimitExceeded, no Retry-After: exponential backoff
        return None

    def fail_next(self, fake: FakeProcessor, status: int) -> None:
        inject(fake, status)

    def finish_jobs(self, fake: FakeProcessor) -> None:
        return None
