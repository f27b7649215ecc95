"""OpenDSR 2.0 specifics beyond the shared conformance tests: the request object, idempotency,
status mapping, the fake's switches, hashed identities and verified responses."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives import serialization

from connectors.base import AuthError, ConfigError, PermanentError, RetryableError, TaskContext
from connectors.http import call_with_retries
from connectors.processors.opendsr import OpenDsrConnector, OpenDsrSettings
from connectors.registry import build_connector, settings_model
from schemas import Identity, SubjectIdentities
from tests.fakes.opendsr import FakeOpenDsr, Pki, make_leaf, make_pki, new_key
from tests.processors.common import email_subject, inject

DOMAIN = "opendsr.fake-processor.test"
RID = "7d5e3c1a-4b2f-4c8d-9e6f-0a1b2c3d4e5f"
EMAIL = "Someone.Specific@Example.test"
RECEIVED = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def pki() -> Pki:
    return make_pki(DOMAIN)


@pytest.fixture(autouse=True)
def secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_OPENDSR_KEY", "key")
    monkeypatch.setenv("T_OPENDSR_SECRET", "secret")


def start(pki: Pki, **kwargs: Any) -> FakeOpenDsr:
    fake = FakeOpenDsr({("key", "secret")}, pki.key, pki.leaf_pem, DOMAIN, **kwargs)
    fake.start()
    return fake


@pytest.fixture
def fake(pki: Pki) -> Iterator[FakeOpenDsr]:
    server = start(pki)
    yield server
    server.stop()


def make(fake: FakeOpenDsr, **overrides: Any) -> OpenDsrConnector:
    raw = {"base_url": fake.url, "processor_domain": DOMAIN, "api_key_env": "T_OPENDSR_KEY",
           "api_secret_env": "T_OPENDSR_SECRET", **overrides}
    settings = settings_model("opendsr").model_validate(raw)
    connector = build_connector("opendsr-test", "opendsr", settings)
    assert isinstance(connector, OpenDsrConnector)
    return connector


def context(job_ref: str | None = None) -> TaskContext:
    return TaskContext(request_id=RID, system="opendsr-test", attempt=1, job_ref=job_ref,
                       received_at=RECEIVED)


def test_create_sends_the_documented_request_object(fake: FakeOpenDsr) -> None:
    connector = make(fake, callback_url="https://erasure.site.example/opendsr/callbacks")
    result = connector.erase(email_subject(EMAIL), context())
    connector.close()
    assert result.status == "pending" and result.job_ref == RID and result.poll_after_s
    assert result.evidence is not None and result.evidence.reference == RID
    body = fake.requests[RID].body
    assert body == {
        "regulation": "gdpr", "subject_request_id": RID, "subject_request_type": "erasure",
        "submitted_time": "2026-11-20T09:30:00Z",
        "subject_identities": [{"identity_type": "email", "identity_value": EMAIL, "identity_format": "raw"}],
        "api_version": "2.0",
        "status_callback_urls": ["https://erasure.site.example/opendsr/callbacks"],
    }


def test_no_callback_url_sends_none(fake: FakeOpenDsr) -> None:
    connector = make(fake)
    connector.erase(email_subject(EMAIL), context())
    connector.close()
    assert "status_callback_urls" not in fake.requests[RID].body


@pytest.mark.parametrize("duplicate_status", [201, 400])
def test_resubmitting_the_same_request_creates_no_second_one(pki: Pki, duplicate_status: Any) -> None:
    fake = start(pki, duplicate_status=duplicate_status)
    connector = make(fake)
    try:
        first = connector.erase(email_subject(EMAIL), context())
        again = connector.erase(email_subject(EMAIL), context())  # e.g. the runtime retried a lost answer
    finally:
        connector.close()
        fake.stop()
    assert first.status == again.status == "pending" and first.job_ref == again.job_ref == RID
    assert fake.request_count() == 1 and fake.posts == 2


@pytest.mark.parametrize("duplicate_status", [201, 400])
def test_a_retry_after_a_lost_201_continues_with_the_processors_request(
        pki: Pki, tmp_path: Path, duplicate_status: Any) -> None:
    fake = start(pki, duplicate_status=duplicate_status)
    anchors = tmp_path / "anchors.pem"
    anchors.write_bytes(pki.ca_pem)
    connector = make(fake, trust_anchors_file=str(anchors))
    fake.add_person("email", EMAIL)
    fake.lose_next_created()
    try:
        result = call_with_retries(lambda: connector.erase(email_subject(EMAIL), context()), attempts=3,
                                   max_wait_s=1, backoff_cap_s=0.01, sleep=lambda _s: None)
        fake.finish_all()
        done = connector.erase(email_subject(EMAIL), context(RID))
    finally:
        connector.close()
        fake.stop()
    assert result.status == "pending" and result.job_ref == RID
    assert fake.request_count() == 1 and fake.posts == 2
    assert done.status == "erased" and not fake.holds("email", EMAIL)


def test_a_400_for_a_request_the_processor_does_not_hold_stays_permanent(pki: Pki) -> None:
    fake = start(pki, duplicate_status=400)
    connector = make(fake)
    bad = TaskContext(request_id="NOT-A-UUID", system="opendsr-test", attempt=1, received_at=RECEIVED)
    try:
        with pytest.raises(PermanentError, match=r"HTTP 400 from POST /v2/requests: invalid"):
            connector.erase(email_subject(EMAIL), bad)
    finally:
        connector.close()
        fake.stop()
    assert fake.request_count() == 0


def test_polling_maps_every_request_status(fake: FakeOpenDsr) -> None:
    fake.add_person("email", EMAIL)
    connector = make(fake)
    try:
        connector.erase(email_subject(EMAIL), context())
        assert connector.erase(email_subject(EMAIL), context(RID)).status == "pending"
        fake.advance(RID)
        assert fake.requests[RID].status == "in_progress"
        polled = connector.erase(email_subject(EMAIL), context(RID))
        assert polled.status == "pending" and polled.job_ref == RID
        fake.advance(RID)
        done = connector.erase(email_subject(EMAIL), context(RID))
    finally:
        connector.close()
    assert done.status == "erased" and done.evidence is not None and done.evidence.reference == RID
    assert not fake.holds("email", EMAIL)


def test_cancelled_is_permanent_and_names_no_one(fake: FakeOpenDsr) -> None:
    connector = make(fake)
    try:
        connector.erase(email_subject(EMAIL), context())
        fake.set_status(RID, "cancelled")
        with pytest.raises(PermanentError) as info:
            connector.erase(email_subject(EMAIL), context(RID))
    finally:
        connector.close()
    assert "cancelled" in str(info.value) and EMAIL.lower() not in str(info.value).lower()


def test_fake_cancels_only_pending_requests(fake: FakeOpenDsr) -> None:
    connector = make(fake)
    connector.erase(email_subject(EMAIL), context())
    connector.close()
    auth = ("key", "secret")
    assert requests.delete(f"{fake.url}/v2/requests/{RID}", auth=auth, timeout=5).status_code == 202
    assert requests.delete(f"{fake.url}/v2/requests/{RID}", auth=auth, timeout=5).status_code == 400


def test_unknown_request_on_poll_is_permanent(fake: FakeOpenDsr) -> None:
    connector = make(fake)
    try:
        with pytest.raises(PermanentError, match=r"HTTP 400 from GET .*no such request"):
            connector.erase(email_subject(EMAIL), context("0b0c2f8e-9a7d-4e1b-8c3f-2d6e4a1b7c90"))
    finally:
        connector.close()


def test_refused_request_gives_the_reason_not_the_message(fake: FakeOpenDsr) -> None:
    connector = make(fake)
    bad = TaskContext(request_id="NOT-A-UUID", system="opendsr-test", attempt=1, received_at=RECEIVED)
    try:
        with pytest.raises(PermanentError) as info:
            connector.erase(email_subject(EMAIL), bad)
    finally:
        connector.close()
    assert "HTTP 400" in str(info.value) and "invalid" in str(info.value)


def test_hashed_identities_and_mapped_types(fake: FakeOpenDsr) -> None:
    fake.add_person("email", EMAIL)
    fake.add_person("controller_customer_id", "cust-42")
    connector = make(fake, identity_format="sha256",
                     identities={"email": "email", "customer_id": "controller_customer_id"})
    subject = SubjectIdentities(identities=[Identity(identity_type="email", identity_value=EMAIL),
                                            Identity(identity_type="customer_id", identity_value="cust-42"),
                                            Identity(identity_type="phone", identity_value="+33600000000")])
    try:
        connector.erase(subject, context())
        sent = fake.requests[RID].body["subject_identities"]
        fake.finish_all()
        assert connector.erase(subject, context(RID)).status == "erased"
    finally:
        connector.close()
    assert sent == [
        {"identity_type": "email", "identity_format": "sha256",
         "identity_value": hashlib.sha256(EMAIL.lower().encode()).hexdigest()},
        {"identity_type": "controller_customer_id", "identity_format": "sha256",
         "identity_value": hashlib.sha256(b"cust-42").hexdigest()},
    ]
    assert not fake.holds("email", EMAIL) and not fake.holds("controller_customer_id", "cust-42")


def test_no_identity_of_a_sent_type_is_not_found(fake: FakeOpenDsr) -> None:
    connector = make(fake)
    phone_only = SubjectIdentities(identities=[Identity(identity_type="phone",
                                                        identity_value="+33600000000")])
    try:
        assert connector.erase(phone_only, context()).status == "not_found"
    finally:
        connector.close()
    assert fake.request_count() == 0


def test_bearer_auth(pki: Pki, fake: FakeOpenDsr) -> None:
    connector = make(fake, auth="bearer", api_secret_env=None)
    try:
        with pytest.raises(AuthError, match="T_OPENDSR_KEY"):
            connector.erase(email_subject(EMAIL), context())  # the fake takes Basic only
    finally:
        connector.close()


@pytest.mark.parametrize("sign_errors", [False, True])
def test_success_answers_are_signed_errors_as_the_switch_says(pki: Pki, sign_errors: bool) -> None:
    fake = start(pki, sign_errors=sign_errors)
    auth = ("key", "secret")
    try:
        created = requests.post(f"{fake.url}/v2/requests", auth=auth, timeout=5, json={
            "regulation": "gdpr", "subject_request_id": RID, "subject_request_type": "erasure",
            "submitted_time": "2026-11-20T09:30:00Z", "api_version": "2.0", "subject_identities": [
                {"identity_type": "email", "identity_value": EMAIL, "identity_format": "raw"}]})
        status = requests.get(f"{fake.url}/v2/requests/{RID}", auth=auth, timeout=5)
        cancelled = requests.delete(f"{fake.url}/v2/requests/{RID}", auth=auth, timeout=5)
        errors = [requests.post(f"{fake.url}/v2/requests", json={}, auth=auth, timeout=5),
                  requests.get(f"{fake.url}/v2/requests/{RID.replace('7', '8')}", auth=auth, timeout=5)]
        inject(fake, 429, reset_s=2)
        errors.append(requests.get(f"{fake.url}/v2/requests/{RID}", auth=auth, timeout=5))
    finally:
        fake.stop()
    assert [created.status_code, status.status_code, cancelled.status_code] == [201, 200, 202]
    for response in (created, status, cancelled):
        assert response.headers["X-OpenDSR-Processor-Domain"] == DOMAIN
        assert response.headers["X-OpenDSR-Signature"]
    assert [e.status_code for e in errors] == [400, 400, 429]
    assert all(("X-OpenDSR-Signature" in e.headers) is sign_errors for e in errors)


@pytest.fixture
def verified(pki: Pki, fake: FakeOpenDsr, tmp_path: Path) -> Iterator[OpenDsrConnector]:
    anchors = tmp_path / "anchors.pem"
    anchors.write_bytes(pki.ca_pem)
    connector = make(fake, trust_anchors_file=str(anchors))
    yield connector
    connector.close()


def test_an_unsigned_429_is_retried_honouring_retry_after(fake: FakeOpenDsr,
                                                           verified: OpenDsrConnector) -> None:
    inject(fake, 429, reset_s=2)
    with pytest.raises(RetryableError) as info:
        verified.erase(email_subject(EMAIL), context())
    assert info.value.http_status == 429 and info.value.retry_after_s == 2
    assert verified.erase(email_subject(EMAIL), context()).status == "pending"


@pytest.mark.contract_exempt("injects a 404, which the OpenDSR spec does not define, to test tolerance")
def test_unsigned_errors_are_classified_as_usual(fake: FakeOpenDsr, verified: OpenDsrConnector) -> None:
    with pytest.raises(PermanentError, match=r"HTTP 400 from GET .*no such request"):
        verified.erase(email_subject(EMAIL), context(RID))
    inject(fake, 404)
    with pytest.raises(PermanentError, match=r"HTTP 404 from GET .*no such request"):
        verified.erase(email_subject(EMAIL), context(RID))
    inject(fake, 503)
    with pytest.raises(RetryableError):
        verified.erase(email_subject(EMAIL), context())


def test_legacy_header_switch(pki: Pki) -> None:
    fake = start(pki, legacy_headers=True)
    try:
        response = requests.get(f"{fake.url}/v2/discovery", timeout=5)
    finally:
        fake.stop()
    assert response.headers["X-OpenGDPR-Signature"] and "X-OpenDSR-Signature" not in response.headers


def test_verified_responses(pki: Pki, fake: FakeOpenDsr, tmp_path: Path) -> None:
    anchors = tmp_path / "anchors.pem"
    anchors.write_bytes(pki.ca_pem)
    connector = make(fake, trust_anchors_file=str(anchors))
    try:
        assert connector.erase(email_subject(EMAIL), context()).status == "pending"
        fake.signing_key = new_key("ec")  # someone else answers in the processor's name
        with pytest.raises(PermanentError, match="response refused"):
            connector.erase(email_subject(EMAIL), context(RID))
    finally:
        connector.close()


def test_verified_responses_refuse_a_self_signed_processor(pki: Pki, tmp_path: Path) -> None:
    leaf, key = make_leaf(DOMAIN, None)
    fake = FakeOpenDsr({("key", "secret")}, key, leaf.public_bytes(serialization.Encoding.PEM), DOMAIN)
    fake.start()
    anchors = tmp_path / "anchors.pem"
    anchors.write_bytes(pki.ca_pem)
    connector = make(fake, trust_anchors_file=str(anchors))
    try:
        with pytest.raises(PermanentError, match="self-signed"):
            connector.erase(email_subject(EMAIL), context())
    finally:
        connector.close()
        fake.stop()
    assert fake.request_count() == 1, "the request went out; only its answer is refused"


def test_unreadable_trust_anchors_name_the_file(fake: FakeOpenDsr, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="trust_anchors_file"):
        make(fake, trust_anchors_file=str(tmp_path / "missing.pem"))


def test_settings_are_strict() -> None:
    with pytest.raises(ValueError):
        OpenDsrSettings.model_validate({"base_url": "https://x", "processor_domain": "x", "typo": 1})
    with pytest.raises(ValueError):
        OpenDsrSettings.model_validate({"base_url": "https://x", "processor_domain": "x",
                                        "identities": {"email": "not_a_type"}})
