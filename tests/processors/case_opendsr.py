from __future__ import annotations

from functools import cache
from typing import Any

from pipeline.devstack.fake_server import FakeProcessor
from tests.fakes.opendsr import FakeOpenDsr, Pki, make_pki
from tests.processors.common import email_subject, inject

KEY, SECRET = "case-opendsr-key", "case-opendsr-secret"
DOMAIN = "opendsr.fake-processor.test"


@cache
def pki() -> Pki:
    """Generated at run time, once per test session: no key is ever committed."""
    return make_pki(DOMAIN)


class Case:
    type = "opendsr"
    secret_env = {"CASE_OPENDSR_KEY": KEY, "CASE_OPENDSR_SECRET": SECRET}
    auth_env = "CASE_OPENDSR_SECRET"
    supports_not_found = False  # the processor completes a request whoever it names
    asynchronous = True
    final_status = "erased"
    subject = staticmethod(email_subject)

    def start_fake(self) -> FakeProcessor:
        fake = FakeOpenDsr({(KEY, SECRET)}, pki().key, pki().leaf_pem, DOMAIN)
        fake.start()
        return fake

    def settings(self, fake: FakeProcessor) -> dict[str, Any]:
        return {"base_url": fake.url, "processor_domain": DOMAIN, "api_key_env": "CASE_OPENDSR_KEY",
                "api_secret_env": "CASE_OPENDSR_SECRET"}

    def seed(self, fake: FakeProcessor, email: str) -> None:
        assert isinstance(fake, FakeOpenDsr)
        fake.add_person("email", email)

    def holds_data(self, fake: FakeProcessor, email: str) -> bool:
        assert isinstance(fake, FakeOpenDsr)
        return fake.holds("email", email)

    def rate_limit_next(self, fake: FakeProcessor) -> float | None:
        inject(fake, 429, reset_s=2)
        return 2.0  # Retry-After

    def fail_next(self, fake: FakeProcessor, status: int) -> None:
        inject(fake, status)

    def finish_jobs(self, fake: FakeProcessor) -> None:
        assert isinstance(fake, FakeOpenDsr)
        fake.finish_all()
