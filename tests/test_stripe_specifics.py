"""Stripe specifics beyond the shared conformance cases: holds, several customers, tombstones,
Stripe-Should-Retry, pagination and the fake's UNCONFIRMED switches."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import requests

from connectors.base import PermanentError, RetryableError, TaskContext
from connectors.http import call_with_retries
from connectors.processors.stripe import StripeConnector, StripeSettings
from connectors.retention import RetentionPolicy
from pipeline.policy import load_policy
from schemas import Identity, SubjectIdentities
from tests.fakes.stripe import FakeStripe

KEY = "sk_test_specifics_51HxyzABC"
EMAIL = "lea.tester@example.net"
POLICY, _ = load_policy(None)
RECEIVED = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
RID = "7d5e3c1a-4b2f-4c8d-9e6f-0a1b2c3d4e5f"


def ts(year: int, month: int, day: int) -> int:
    return int(datetime(year, month, day, 12, 0, tzinfo=UTC).timestamp())


def person(email: str = EMAIL) -> SubjectIdentities:
    return SubjectIdentities(identities=[Identity(identity_type="email", identity_value=email)])


def context(retention: RetentionPolicy | None = POLICY, request_id: str = RID) -> TaskContext:
    return TaskContext(request_id=request_id, system="stripe", attempt=1, received_at=RECEIVED,
                       retention=retention)


def make_fake(**switches: object) -> FakeStripe:
    fake = FakeStripe({KEY}, **switches)  # type: ignore[arg-type]
    fake.start()
    return fake


@pytest.fixture
def fake() -> Iterator[FakeStripe]:
    server = make_fake()
    yield server
    server.stop()


@pytest.fixture
def connector(fake: FakeStripe, monkeypatch: pytest.MonkeyPatch) -> Iterator[StripeConnector]:
    monkeypatch.setenv("TEST_STRIPE_KEY", KEY)
    instance = StripeConnector("stripe", StripeSettings(base_url=fake.url, secret_key_env="TEST_STRIPE_KEY"))
    yield instance
    instance.close()


def bearer() -> dict[str, str]:
    return {"authorization": f"Bearer {KEY}"}


def test_customer_without_invoices_or_charges_is_erased(fake: FakeStripe, connector: StripeConnector) -> None:
    customer_id = fake.add_customer(EMAIL)
    result = connector.erase(person(), context())
    assert result.status == "erased" and not result.holds
    assert result.evidence and result.evidence.reference == customer_id
    assert result.evidence.records_affected == 1 and result.evidence.http_status == 200
    assert not fake.has_customer(EMAIL)
    # Deleted is confirmed, but Stripe still answers GET with the deleted-customer shell, for good.
    assert result.evidence.assurance == "confirmed"
    assert [(r.what, r.until) for r in result.evidence.residual] == [
        ("deleted customer record (id, deleted flag)", None),
        ("events and request logs naming the customer (not redacted: redaction is off)", None)]
    shell = requests.get(f"{fake.url}/v1/customers/{customer_id}", headers=bearer(), timeout=5).json()
    assert shell["deleted"] is True


def test_invoices_give_a_hold_running_from_the_latest_record(fake: FakeStripe,
                                                             connector: StripeConnector) -> None:
    customer_id = fake.add_customer(EMAIL)
    fake.add_invoice(customer_id, created=ts(2023, 5, 2))
    fake.add_charge(customer_id, created=ts(2024, 2, 10))
    result = connector.erase(person(), context())
    assert result.status == "held" and len(result.holds) == 1
    hold = result.holds[0]
    assert hold.data_category == "invoices"
    # invoices: 10 years from the end of the financial year (12-31) of the latest record (2024)
    assert hold.retain_until == datetime(2034, 12, 31, 23, 59, 59, tzinfo=UTC)
    assert hold.legal_basis == POLICY.rule("invoices").legal_basis  # type: ignore[union-attr]
    assert not fake.has_customer(EMAIL)
    assert len(fake.invoices) == 1 and len(fake.charges) == 1, "Stripe keeps them"
    assert result.evidence and result.evidence.assurance == "confirmed"
    assert result.evidence.residual[0].what == "deleted customer record (id, deleted flag)"


def test_retained_category_is_configurable(fake: FakeStripe, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_STRIPE_KEY", KEY)
    instance = StripeConnector("stripe", StripeSettings(base_url=fake.url, secret_key_env="TEST_STRIPE_KEY",
                                                        retained_category="card_data"))
    customer_id = fake.add_customer(EMAIL)
    fake.add_charge(customer_id, created=ts(2026, 1, 15))
    try:
        result = instance.erase(person(), context())
    finally:
        instance.close()
    assert result.status == "held" and result.holds[0].data_category == "card_data"
    assert result.holds[0].retain_until == datetime(2027, 2, 15, 12, 0, tzinfo=UTC)  # P13M, record date


@pytest.mark.parametrize("retention", [None, RetentionPolicy(categories={"account": "accounts"})],
                         ids=["no-policy", "no-rule"])
def test_no_retention_rule_is_permanent_and_deletes_nothing(fake: FakeStripe, connector: StripeConnector,
                                                            retention: RetentionPolicy | None) -> None:
    customer_id = fake.add_customer(EMAIL)
    fake.add_invoice(customer_id, created=ts(2024, 1, 1))
    with pytest.raises(PermanentError) as info:
        connector.erase(person(), context(retention))
    assert "invoices" in str(info.value) and EMAIL not in str(info.value)
    assert fake.has_customer(EMAIL) and fake.delete_calls == 0


def test_without_invoices_no_policy_is_needed(fake: FakeStripe, connector: StripeConnector) -> None:
    fake.add_customer(EMAIL)
    assert connector.erase(person(), context(None)).status == "erased"


def test_several_customers_sharing_the_email_are_all_deleted(fake: FakeStripe,
                                                             connector: StripeConnector) -> None:
    first = fake.add_customer(EMAIL, created=ts(2022, 1, 1))
    second = fake.add_customer(EMAIL, created=ts(2023, 1, 1))
    third = fake.add_customer(EMAIL, created=ts(2024, 1, 1))
    other = fake.add_customer("someone.else@example.net")
    fake.add_invoice(second, created=ts(2021, 6, 1))
    fake.add_invoice(first, created=ts(2025, 6, 1))
    result = connector.erase(person(), context())
    assert result.status == "held"
    assert result.evidence and result.evidence.records_affected == 3
    assert set((result.evidence.reference or "").split(", ")) == {first, second, third}
    assert result.holds[0].retain_until == datetime(2035, 12, 31, 23, 59, 59, tzinfo=UTC)
    assert not fake.has_customer(EMAIL) and fake.has_customer("someone.else@example.net")
    assert other in fake.customers and not fake.customers[other].get("deleted")


def test_more_customers_than_a_page_are_all_found(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = make_fake(limit_per_s=10_000)  # 105 customers take 315 calls: beyond the sandbox's 25 rps
    monkeypatch.setenv("TEST_STRIPE_KEY", KEY)
    instance = StripeConnector("stripe", StripeSettings(base_url=fake.url, secret_key_env="TEST_STRIPE_KEY"))
    try:
        ids = {fake.add_customer(EMAIL, created=ts(2020, 1, 1) + i) for i in range(105)}
        result = instance.erase(person(), context())
        assert result.status == "erased" and result.evidence and result.evidence.records_affected == 105
        assert not fake.has_customer(EMAIL) and all(fake.customers[i].get("deleted") for i in ids)
    finally:
        instance.close()
        fake.stop()


def test_email_filter_is_case_sensitive_so_the_lower_case_form_is_asked_too(
        fake: FakeStripe, connector: StripeConnector) -> None:
    fake.add_customer(EMAIL)
    answer = requests.get(f"{fake.url}/v1/customers", params={"email": EMAIL.upper()}, headers=bearer(),
                          timeout=5)
    assert answer.json()["data"] == [], "the fake filters case-sensitively, as Stripe documents"
    assert connector.erase(person(EMAIL.upper()), context()).status == "erased"
    assert not fake.has_customer(EMAIL)


def test_deleted_customer_stays_retrievable_with_deleted_true(fake: FakeStripe,
                                                              connector: StripeConnector) -> None:
    customer_id = fake.add_customer(EMAIL)
    fake.add_invoice(customer_id, created=ts(2024, 1, 1))
    connector.erase(person(), context())
    answer = requests.get(f"{fake.url}/v1/customers/{customer_id}", headers=bearer(), timeout=5)
    assert answer.status_code == 200
    assert answer.json() == {"id": customer_id, "object": "customer", "deleted": True}
    listed = requests.get(f"{fake.url}/v1/customers", params={"email": EMAIL}, headers=bearer(), timeout=5)
    assert listed.json()["data"] == [], "the list shows live customers only"
    invoices = requests.get(f"{fake.url}/v1/invoices", params={"customer": customer_id}, headers=bearer(),
                            timeout=5)
    assert len(invoices.json()["data"]) == 1, "invoices outlive the customer"
    assert connector.erase(person(), context()).status == "not_found"


def test_unknown_customer_is_resource_missing(fake: FakeStripe) -> None:
    answer = requests.delete(f"{fake.url}/v1/customers/cus_unknown", headers=bearer(), timeout=5)
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "resource_missing"
    assert answer.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize("repeat_delete", ["404", "tombstone"])
def test_repeat_delete_switch(repeat_delete: str, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = make_fake(repeat_delete=repeat_delete)
    try:
        customer_id = fake.add_customer(EMAIL)
        first = requests.delete(f"{fake.url}/v1/customers/{customer_id}", headers=bearer(), timeout=5)
        again = requests.delete(f"{fake.url}/v1/customers/{customer_id}", headers=bearer(), timeout=5)
        assert first.status_code == 200 and first.json()["deleted"] is True
        if repeat_delete == "404":
            assert again.status_code == 404 and again.json()["error"]["code"] == "resource_missing"
        else:
            assert again.status_code == 200 and again.json()["deleted"] is True
        # either way the connector reports the person as gone
        monkeypatch.setenv("TEST_STRIPE_KEY", KEY)
        instance = StripeConnector("stripe", StripeSettings(base_url=fake.url,
                                                            secret_key_env="TEST_STRIPE_KEY"))
        try:
            assert instance.erase(person(), context()).status == "not_found"
        finally:
            instance.close()
    finally:
        fake.stop()


def test_basic_auth_is_accepted_and_bad_keys_get_the_stripe_envelope(fake: FakeStripe) -> None:
    basic = base64.b64encode(f"{KEY}:".encode()).decode()
    ok = requests.get(f"{fake.url}/v1/customers", headers={"authorization": f"Basic {basic}"}, timeout=5)
    assert ok.status_code == 200
    bad = requests.get(f"{fake.url}/v1/customers", headers={"authorization": "Bearer sk_test_wrong"},
                       timeout=5)
    assert bad.status_code == 401 and bad.json()["error"]["type"] == "invalid_request_error"
    assert "sk_test_wrong" not in bad.text


def test_should_retry_false_is_never_retried(fake: FakeStripe, connector: StripeConnector) -> None:
    fake.add_customer(EMAIL)
    requests.post(f"{fake.url}/__fake__/faults", json={"status": 429, "should_retry": False}, timeout=5)
    waits: list[float] = []
    with pytest.raises(PermanentError) as info:
        call_with_retries(lambda: connector.erase(person(), context()), attempts=3, max_wait_s=5,
                          backoff_cap_s=0.01, sleep=waits.append)
    assert waits == [] and "not to retry" in str(info.value)
    assert fake.has_customer(EMAIL) and fake.delete_calls == 0


@pytest.mark.parametrize("retry_after", [True, False], ids=["with-retry-after", "without-retry-after"])
def test_rate_limit_with_and_without_retry_after(retry_after: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = make_fake(retry_after_on_429=retry_after)
    monkeypatch.setenv("TEST_STRIPE_KEY", KEY)
    instance = StripeConnector("stripe", StripeSettings(base_url=fake.url, secret_key_env="TEST_STRIPE_KEY"))
    try:
        fake.add_customer(EMAIL)
        requests.post(f"{fake.url}/__fake__/faults", json={"status": 429, "reset_s": 3}, timeout=5)
        with pytest.raises(RetryableError) as info:
            instance.erase(person(), context())
        assert info.value.http_status == 429
        assert info.value.retry_after_s == (3.0 if retry_after else None)
        waits: list[float] = []
        requests.post(f"{fake.url}/__fake__/faults", json={"status": 429, "reset_s": 3}, timeout=5)
        result = call_with_retries(lambda: instance.erase(person(), context()), attempts=3, max_wait_s=5,
                                   backoff_cap_s=0.01, sleep=waits.append)
        assert result.status == "erased" and len(waits) == 1
        assert waits[0] == 3.0 if retry_after else waits[0] <= 0.01
    finally:
        instance.close()
        fake.stop()


def test_the_fakes_own_limiter_answers_429_should_retry(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = make_fake(limit_per_s=2)
    try:
        answers = [requests.get(f"{fake.url}/v1/customers", headers=bearer(), timeout=5) for _ in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 429]
        assert answers[2].headers["Stripe-Should-Retry"] == "true" and "Retry-After" in answers[2].headers
        assert answers[2].json()["error"]["code"] == "rate_limit"
        assert all("Request-Id" in a.headers for a in answers)
    finally:
        fake.stop()


def test_a_retry_after_a_partial_failure_keeps_the_hold(fake: FakeStripe, connector: StripeConnector) -> None:
    invoiced = fake.add_customer(EMAIL, created=ts(2024, 1, 1))
    plain = fake.add_customer(EMAIL, created=ts(2022, 1, 1))
    fake.add_invoice(invoiced, created=ts(2024, 3, 1))

    original = fake.handle
    calls: list[str] = []

    def fail_second_delete(method: str, path: str, *rest: object) -> object:
        if method == "DELETE":
            calls.append(path)
            if len(calls) == 2:
                from pipeline.devstack.fake_server import Reply
                return Reply(503, {"error": {"type": "api_error", "message": "boom"}})
        return original(method, path, *rest)  # type: ignore[arg-type]

    fake.handle = fail_second_delete  # type: ignore[assignment,method-assign]
    with pytest.raises(RetryableError):
        connector.erase(person(), context())
    assert fake.customers[invoiced].get("deleted") and not fake.customers[plain].get("deleted")
    result = connector.erase(person(), context())  # the retry only finds the customer without invoices
    assert result.status == "held" and result.holds[0].data_category == "invoices"
    assert result.evidence and set((result.evidence.reference or "").split(", ")) == {invoiced, plain}
    assert not fake.has_customer(EMAIL)


def test_errors_name_routes_not_people(fake: FakeStripe, connector: StripeConnector) -> None:
    fake.add_customer(EMAIL)
    requests.post(f"{fake.url}/__fake__/faults", json={"status": 500}, timeout=5)
    with pytest.raises(RetryableError) as info:
        connector.erase(person(), context())
    assert "GET /v1/customers" in str(info.value) and EMAIL not in str(info.value)


def test_release_is_manual(fake: FakeStripe, connector: StripeConnector) -> None:
    release = TaskContext(request_id=RID, system="stripe", attempt=1, received_at=RECEIVED,
                          retention=POLICY, release_categories=("invoices",))
    assert connector.erase(person(), release).status == "manual"
