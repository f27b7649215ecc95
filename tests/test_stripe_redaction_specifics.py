"""Stripe with `redaction: true`: a redaction job per request, run when ready, customers deleted
once it succeeds; validation failures and cancellations reported, never `erased`."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import requests

from connectors.base import EraseResult, PermanentError, TaskContext
from connectors.processors.stripe import StripeConnector, StripeSettings
from pipeline.policy import load_policy
from schemas import Identity, SubjectIdentities
from tests.fakes.stripe import REDACTED, FakeStripe

KEY = "sk_test_redaction_51HxyzABC"
EMAIL = "noor.tester@example.net"
POLICY, _ = load_policy(None)
RID = "0b5e3c1a-4b2f-4c8d-9e6f-0a1b2c3d4e5f"


def person() -> SubjectIdentities:
    return SubjectIdentities(identities=[Identity(identity_type="email", identity_value=EMAIL)])


def context(job_ref: str | None = None, attempt: int = 1) -> TaskContext:
    return TaskContext(request_id=RID, system="stripe", attempt=attempt, job_ref=job_ref,
                       received_at=datetime(2026, 11, 20, tzinfo=UTC), retention=POLICY)


@pytest.fixture
def fake() -> Iterator[FakeStripe]:
    server = FakeStripe({KEY})
    server.start()
    yield server
    server.stop()


def connect(fake: FakeStripe, monkeypatch: pytest.MonkeyPatch, **settings: object) -> StripeConnector:
    monkeypatch.setenv("TEST_STRIPE_KEY", KEY)
    return StripeConnector("stripe", StripeSettings(base_url=fake.url, secret_key_env="TEST_STRIPE_KEY",
                                                    **settings))


@pytest.fixture
def connector(fake: FakeStripe, monkeypatch: pytest.MonkeyPatch) -> Iterator[StripeConnector]:
    instance = connect(fake, monkeypatch, redaction=True)
    yield instance
    instance.close()


def poll_until_final(connector: StripeConnector, first: EraseResult, limit: int = 10) -> EraseResult:
    result, attempt = first, 1
    while result.status == "pending" and limit:
        attempt, limit = attempt + 1, limit - 1
        result = connector.erase(person(), context(result.job_ref, attempt))
    return result


def test_a_redaction_job_is_run_when_ready_then_the_customer_is_deleted(
        fake: FakeStripe, connector: StripeConnector) -> None:
    customer_id = fake.add_customer(EMAIL)
    invoice_id = fake.add_invoice(customer_id, created=int(datetime(2025, 1, 5, tzinfo=UTC).timestamp()))
    first = connector.erase(person(), context())
    assert first.status == "pending" and first.job_ref and first.job_ref.startswith("stripe-redaction:prj_")
    job_id = first.job_ref.removeprefix("stripe-redaction:")
    assert fake.redaction.status(job_id) == "validating" and fake.has_customer(EMAIL)
    second = connector.erase(person(), context(first.job_ref, 2))  # validating -> ready -> run
    assert second.status == "pending" and fake.redaction.run_calls == 1
    assert fake.redaction.status(job_id) == "redacting"
    final = poll_until_final(connector, second)
    assert final.status == "erased" and final.holds == [], "redacted at Stripe: nothing held there"
    assert fake.redaction.status(job_id) == "succeeded"
    assert fake.invoices[invoice_id]["customer_email"] == REDACTED
    assert fake.customers[customer_id] == {"id": customer_id, "object": "customer", "deleted": True}
    evidence = final.evidence
    assert evidence is not None and evidence.assurance == "accepted" and job_id in (evidence.reference or "")
    # Stripe says related objects may take up to four days after the job succeeds.
    assert evidence.completes_by is not None
    assert timedelta(days=3, hours=23) < evidence.completes_by - datetime.now(UTC) <= timedelta(days=4)
    assert [r.until for r in evidence.residual] == [evidence.completes_by]


def test_a_ready_job_waits_for_run(fake: FakeStripe) -> None:
    customer_id = fake.add_customer(EMAIL)
    headers = {"authorization": f"Bearer {KEY}"}
    job = requests.post(f"{fake.url}/v1/privacy/redaction_jobs", headers=headers, timeout=5,
                        data={"objects[customers][0]": customer_id}).json()
    for _ in range(3):
        job = requests.get(f"{fake.url}/v1/privacy/redaction_jobs/{job['id']}", headers=headers,
                           timeout=5).json()
    assert job["status"] == "ready" and fake.has_customer(EMAIL)


def test_a_job_names_every_root_object_type_and_keeps_the_order_sent(fake: FakeStripe) -> None:
    customers = [fake.add_customer(f"c{n}@example.net") for n in range(12)]
    form = {f"objects[customers][{n}]": c for n, c in enumerate(customers)}
    job = requests.post(f"{fake.url}/v1/privacy/redaction_jobs", headers={"authorization": f"Bearer {KEY}"},
                        data=form, timeout=5).json()
    assert job["objects"]["customers"] == customers, "index 10 comes after 9, not after 1"
    assert sorted(job["objects"]) == ["charges", "checkout_sessions", "customers",
                                      "identity_verification_sessions", "invoices", "issuing_cardholders",
                                      "payment_intents", "radar_value_list_items", "setup_intents"]
    assert {k: v for k, v in job["objects"].items() if k != "customers"} == dict.fromkeys(
        ["charges", "checkout_sessions", "identity_verification_sessions", "invoices", "issuing_cardholders",
         "payment_intents", "radar_value_list_items", "setup_intents"])


def test_a_failed_job_embeds_its_validation_errors(fake: FakeStripe) -> None:
    customer_id = fake.add_customer(EMAIL)
    fake.redaction.unredactable[customer_id] = "invalid_state"
    headers = {"authorization": f"Bearer {KEY}"}
    job = requests.post(f"{fake.url}/v1/privacy/redaction_jobs", headers=headers, timeout=5,
                        data={"objects[customers][0]": customer_id}).json()
    assert job["validation_errors"] is None, "not validated yet"
    job = requests.get(f"{fake.url}/v1/privacy/redaction_jobs/{job['id']}", headers=headers, timeout=5).json()
    assert job["status"] == "failed"
    assert [e["code"] for e in job["validation_errors"]["data"]] == ["invalid_state"]
    assert job["validation_errors"]["url"] == f"/v1/privacy/redaction_jobs/{job['id']}/validation_errors"


def test_a_validation_failure_is_reported_and_the_job_canceled(fake: FakeStripe,
                                                               connector: StripeConnector) -> None:
    customer_id = fake.add_customer(EMAIL)
    charge_id = fake.add_charge(customer_id, created=int(datetime.now(UTC).timestamp()))
    fake.redaction.unredactable[charge_id] = "invalid_state"
    first = connector.erase(person(), context())
    with pytest.raises(PermanentError) as info:
        connector.erase(person(), context(first.job_ref, 2))
    message = str(info.value)
    assert "failed validation" in message and "invalid_state on ch (x1)" in message
    assert "nothing was redacted" in message and EMAIL not in message
    assert fake.redaction.cancel_calls == 1, "a failed job keeps the customer locked until canceled"
    assert fake.has_customer(EMAIL) and fake.redaction.run_calls == 0


def test_a_job_canceled_elsewhere_is_a_failure_not_an_erasure(fake: FakeStripe,
                                                             connector: StripeConnector) -> None:
    fake.add_customer(EMAIL)
    first = connector.erase(person(), context())
    assert first.job_ref
    fake.redaction.jobs[first.job_ref.removeprefix("stripe-redaction:")]["status"] = "canceled"
    with pytest.raises(PermanentError, match="canceled outside the pipeline"):
        connector.erase(person(), context(first.job_ref, 2))
    assert fake.has_customer(EMAIL)


def test_a_lost_create_answer_does_not_make_a_second_job(fake: FakeStripe,
                                                         connector: StripeConnector) -> None:
    fake.add_customer(EMAIL)
    first = connector.erase(person(), context())
    again = connector.erase(person(), context())  # same request and attempt: same Idempotency-Key
    assert again.job_ref == first.job_ref and len(fake.redaction.jobs) == 1


def test_unknown_person_is_not_found_without_a_job(fake: FakeStripe, connector: StripeConnector) -> None:
    assert connector.erase(person(), context()).status == "not_found"
    assert fake.redaction.jobs == {}


def test_without_redaction_the_shell_and_logs_are_residual(fake: FakeStripe,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    fake.add_customer(EMAIL)
    plain = connect(fake, monkeypatch)
    try:
        result = plain.erase(person(), context())
    finally:
        plain.close()
    assert result.status == "erased" and fake.redaction.jobs == {}
    assert result.evidence is not None and result.evidence.assurance == "confirmed"
    assert [(r.what, r.until) for r in result.evidence.residual] == [
        ("deleted customer record (id, deleted flag)", None),
        ("events and request logs naming the customer (not redacted: redaction is off)", None)]
