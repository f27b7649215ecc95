from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pipeline.devstack.fake_server import FakeProcessor
from tests.fakes.stripe import FakeStripe
from tests.processors.common import email_subject, inject

KEY = "sk_test_case_4eC39HqLyjWDarjtT1zdp7dc"
INVOICED_AT = int(datetime(2025, 3, 14, 10, 0, tzinfo=UTC).timestamp())


class Case:
    type = "stripe"
    secret_env = {"CASE_STRIPE_KEY": KEY}
    auth_env = "CASE_STRIPE_KEY"
    supports_not_found = True
    asynchronous = False
    final_status = "held"  # every seeded customer has an invoice, which Stripe keeps
    subject = staticmethod(email_subject)

    def start_fake(self) -> FakeProcessor:
        fake = FakeStripe({KEY}, retry_after_on_429=True)
        fake.start()
        return fake

    def settings(self, fake: FakeProcessor) -> dict[str, Any]:
        return {"base_url": fake.url, "secret_key_env": "CASE_STRIPE_KEY"}

    def seed(self, fake: FakeProcessor, email: str) -> None:
        assert isinstance(fake, FakeStripe)
        customer_id = fake.add_customer(email)
        fake.add_invoice(customer_id, created=INVOICED_AT)
        fake.add_charge(customer_id, created=INVOICED_AT)

    def holds_data(self, fake: FakeProcessor, email: str) -> bool:
        """A customer with this e-mail that is not deleted (invoices and charges are kept lawfully)."""
        assert isinstance(fake, FakeStripe)
        return fake.has_customer(email)

    def rate_limit_next(self, fake: FakeProcessor) -> float | None:
        inject(fake, 429, reset_s=2)
        return 2.0  # Retry-After: 2, with Stripe-Should-Retry: true

    def fail_next(self, fake: FakeProcessor, status: int) -> None:
        inject(fake, status)

    def finish_jobs(self, fake: FakeProcessor) -> None:
        return None
