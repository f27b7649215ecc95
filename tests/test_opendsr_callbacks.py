"""Controller-side verification of OpenDSR callbacks (connectors/opendsr_callbacks.py).

A CA and signing certificates are generated at test time; the fake processor serves
/discovery and the certificate, and (end to end) POSTs its own signed callbacks.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from connectors.base import TaskContext
from connectors.processors.opendsr import OpenDsrConnector, OpenDsrSettings
from connectors.processors.opendsr_callbacks import (
    CallbackRejected,
    CallbackTrust,
    CertificateRejected,
    DomainNotAllowed,
    MalformedCallback,
    SignatureInvalid,
    _default_fetch,
    verify_callback,
)
from tests.fakes.opendsr import FakeOpenDsr, Pki, make_ca, make_leaf, make_pki, new_key, sign
from tests.processors.common import email_subject

DOMAIN = "opendsr.fake-processor.test"
CALLBACK_URL = "https://erasure.site.example/opendsr/callbacks"
RID = "5b0c2f8e-9a7d-4e1b-8c3f-2d6e4a1b7c90"


def pem(certificate: Any) -> bytes:
    return bytes(certificate.public_bytes(serialization.Encoding.PEM))


@pytest.fixture(scope="module")
def pki() -> Pki:
    return make_pki(DOMAIN)


@pytest.fixture
def fake(pki: Pki) -> Iterator[FakeOpenDsr]:
    server = FakeOpenDsr({("key", "secret")}, pki.key, pki.leaf_pem, DOMAIN)
    server.start()
    yield server
    server.stop()


class CountingFetch:
    def __init__(self) -> None:
        self.urls: list[str] = []

    def __call__(self, url: str) -> bytes:
        self.urls.append(url)
        return _default_fetch(url)


def trust_for(pki: Pki, fake: FakeOpenDsr, **kwargs: Any) -> CallbackTrust:
    return CallbackTrust(anchors=[pki.ca], discovery_urls={DOMAIN: f"{fake.url}/v2/discovery"}, **kwargs)


def status_body(status: str = "completed", callback_url: str = CALLBACK_URL) -> bytes:
    return json.dumps({"controller_id": "controller-1", "expected_completion_time": "2026-11-27T09:00:00Z",
                       "subject_request_id": RID, "request_status": status,
                       "status_callback_url": callback_url}).encode()


def headers(key: Any, body: bytes, domain: str = DOMAIN, **kwargs: Any) -> dict[str, str]:
    return {"X-OpenDSR-Processor-Domain": domain, "X-OpenDSR-Signature": sign(key, body, **kwargs)}


def rejected(kind: type[CallbackRejected], status: int, *args: Any, **kwargs: Any) -> CallbackRejected:
    with pytest.raises(kind) as info:
        verify_callback(*args, **kwargs)
    assert info.value.http_status == status
    return info.value


def test_good_callback_is_accepted(pki: Pki, fake: FakeOpenDsr) -> None:
    body = status_body()
    result = verify_callback(headers(pki.key, body), body, [DOMAIN], trust_for(pki, fake),
                             expected_callback_url=CALLBACK_URL)
    assert result["request_status"] == "completed" and result["subject_request_id"] == RID


def test_tampered_body_is_refused_403(pki: Pki, fake: FakeOpenDsr) -> None:
    body = status_body("in_progress")
    tampered = body.replace(b"in_progress", b"completed")
    rejected(SignatureInvalid, 403, headers(pki.key, body), tampered, [DOMAIN], trust_for(pki, fake))


def test_signature_by_another_key_is_refused_403(pki: Pki, fake: FakeOpenDsr) -> None:
    body = status_body()
    rejected(SignatureInvalid, 403, headers(new_key("ec"), body), body, [DOMAIN], trust_for(pki, fake))


def test_missing_or_garbled_signature_is_refused_403(pki: Pki, fake: FakeOpenDsr) -> None:
    body = status_body()
    trust = trust_for(pki, fake)
    rejected(SignatureInvalid, 403, {"X-OpenDSR-Processor-Domain": DOMAIN}, body, [DOMAIN], trust)
    rejected(SignatureInvalid, 403, {"X-OpenDSR-Processor-Domain": DOMAIN, "X-OpenDSR-Signature": "***"},
             body, [DOMAIN], trust)


def test_domain_not_on_the_allow_list_is_refused_401_without_fetching(pki: Pki, fake: FakeOpenDsr) -> None:
    body = status_body()
    fetch = CountingFetch()
    trust = trust_for(pki, fake, fetch=fetch)
    rejected(DomainNotAllowed, 401, headers(pki.key, body), body, ["opendsr.other-processor.test"], trust)
    rejected(DomainNotAllowed, 401, {"X-OpenDSR-Signature": sign(pki.key, body)}, body, [DOMAIN], trust)
    assert fetch.urls == []


def test_self_signed_leaf_is_refused_401(pki: Pki, fake: FakeOpenDsr) -> None:
    leaf, key = make_leaf(DOMAIN, None)
    fake.certificate_pem = pem(leaf)
    body = status_body()
    error = rejected(CertificateRejected, 401, headers(key, body), body, [DOMAIN], trust_for(pki, fake))
    assert "self-signed" in error.message
    # even when someone put it among the trust anchors
    trust = CallbackTrust(anchors=[pki.ca, leaf], discovery_urls={DOMAIN: f"{fake.url}/v2/discovery"})
    rejected(CertificateRejected, 401, headers(key, body), body, [DOMAIN], trust)


def test_expired_certificate_is_refused_401(pki: Pki, fake: FakeOpenDsr) -> None:
    now = datetime.now(UTC)
    leaf, key = make_leaf(DOMAIN, (pki.ca, pki.ca_key), not_before=now - timedelta(days=100),
                          not_after=now - timedelta(days=1))
    fake.certificate_pem = pem(leaf)
    body = status_body()
    error = rejected(CertificateRejected, 401, headers(key, body), body, [DOMAIN], trust_for(pki, fake))
    assert "validity" in error.message


def test_cached_certificate_stops_counting_once_expired(pki: Pki, fake: FakeOpenDsr) -> None:
    clock = [datetime.now(UTC)]
    trust = trust_for(pki, fake, now=lambda: clock[0])
    body = status_body()
    verify_callback(headers(pki.key, body), body, [DOMAIN], trust)
    clock[0] += timedelta(days=400)
    rejected(CertificateRejected, 401, headers(pki.key, body), body, [DOMAIN], trust)


def test_certificate_for_another_domain_is_refused_401(pki: Pki, fake: FakeOpenDsr) -> None:
    leaf, key = make_leaf("opendsr.someone-else.test", (pki.ca, pki.ca_key))
    fake.certificate_pem = pem(leaf)
    body = status_body()
    rejected(CertificateRejected, 401, headers(key, body), body, [DOMAIN], trust_for(pki, fake))


def test_certificate_from_an_untrusted_ca_is_refused_401(pki: Pki, fake: FakeOpenDsr) -> None:
    other_ca = make_ca("Some Other CA")
    leaf, key = make_leaf(DOMAIN, other_ca)
    fake.certificate_pem = pem(leaf)
    body = status_body()
    rejected(CertificateRejected, 401, headers(key, body), body, [DOMAIN], trust_for(pki, fake))


def test_certificate_url_on_another_domain_is_refused_401(pki: Pki) -> None:
    def fetch(url: str) -> bytes:
        if url.endswith("/discovery"):
            return json.dumps({"processor_certificate": "https://attacker.example/cert.pem"}).encode()
        raise AssertionError("the certificate must not be downloaded")

    body = status_body()
    trust = CallbackTrust(anchors=[pki.ca], fetch=fetch)
    rejected(CertificateRejected, 401, headers(pki.key, body), body, [DOMAIN], trust)


def test_signature_is_checked_before_parsing(pki: Pki, fake: FakeOpenDsr) -> None:
    not_json = b"{this is not json"
    trust = trust_for(pki, fake)
    rejected(SignatureInvalid, 403, headers(new_key("ec"), not_json), not_json, [DOMAIN], trust)
    rejected(MalformedCallback, 400, headers(pki.key, not_json), not_json, [DOMAIN], trust)


def test_status_objects_are_checked_after_the_signature(pki: Pki, fake: FakeOpenDsr) -> None:
    trust = trust_for(pki, fake)
    odd = status_body("erased")
    rejected(MalformedCallback, 400, headers(pki.key, odd), odd, [DOMAIN], trust)
    elsewhere = status_body(callback_url="https://attacker.example/cb")
    rejected(MalformedCallback, 400, headers(pki.key, elsewhere), elsewhere, [DOMAIN], trust,
             expected_callback_url=CALLBACK_URL)


def test_certificate_is_cached(pki: Pki, fake: FakeOpenDsr) -> None:
    fetch = CountingFetch()
    trust = trust_for(pki, fake, fetch=fetch)
    for status in ("pending", "in_progress", "completed"):
        body = status_body(status)
        verify_callback(headers(pki.key, body), body, [DOMAIN], trust)
    assert len(fetch.urls) == 2, "discovery and the certificate, once"


def test_rotated_certificate_is_downloaded_again_not_on_every_forgery(pki: Pki, fake: FakeOpenDsr) -> None:
    fetch = CountingFetch()
    trust = trust_for(pki, fake, fetch=fetch)
    body = status_body()
    verify_callback(headers(pki.key, body), body, [DOMAIN], trust)
    leaf, key = make_leaf(DOMAIN, (pki.ca, pki.ca_key))
    fake.certificate_pem = pem(leaf)
    rejected(SignatureInvalid, 403, headers(key, body), body, [DOMAIN], trust)
    assert len(fetch.urls) == 2, "a forgery within the interval triggers no download"
    trust.refetch_interval_s = 0
    assert verify_callback(headers(key, body), body, [DOMAIN], trust)["request_status"] == "completed"
    assert len(fetch.urls) == 4


@pytest.mark.parametrize("key_kind,rsa_padding", [("rsa", "pkcs1v15"), ("rsa", "pss"), ("ec", "pkcs1v15")])
def test_rsa_and_ecdsa_signatures(key_kind: Any, rsa_padding: Any) -> None:
    pki = make_pki(DOMAIN, key_kind)
    fake = FakeOpenDsr(set(), pki.key, pki.leaf_pem, DOMAIN)
    fake.start()
    try:
        body = status_body()
        result = verify_callback(headers(pki.key, body, rsa_padding=rsa_padding), body, [DOMAIN],
                                 trust_for(pki, fake))
        assert result["request_status"] == "completed"
    finally:
        fake.stop()


def test_v1_header_names_are_honoured(pki: Pki, fake: FakeOpenDsr) -> None:
    body = status_body()
    legacy = {"X-OpenGDPR-Processor-Domain": DOMAIN, "X-OpenGDPR-Signature": sign(pki.key, body)}
    assert verify_callback(legacy, body, [DOMAIN], trust_for(pki, fake))["request_status"] == "completed"


# -- end to end: the fake processor calls a receiver that verifies ------------------------------
class Receiver:
    """What the web app's callback route does: verify, answer 202 or the refusal's status."""

    def __init__(self, trust: CallbackTrust, fail_first: int = 0) -> None:
        self.trust = trust
        self.accepted: list[dict[str, Any]] = []
        self.refused: list[int] = []
        self.fail_first = fail_first
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                status = receiver.receive(dict(self.headers.items()), raw)
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/opendsr/callbacks"

    def receive(self, headers: dict[str, str], raw: bytes) -> int:
        if self.fail_first > 0:
            self.fail_first -= 1
            return 500
        try:
            body = verify_callback(headers, raw, [DOMAIN], self.trust, expected_callback_url=self.url)
        except CallbackRejected as exc:
            self.refused.append(exc.http_status)
            return exc.http_status
        self.accepted.append(body)
        return 202

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_fake_processor_callbacks_verify_end_to_end(pki: Pki, fake: FakeOpenDsr,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("E2E_OPENDSR_KEY", "key")
    monkeypatch.setenv("E2E_OPENDSR_SECRET", "secret")
    receiver = Receiver(trust_for(pki, fake), fail_first=1)
    connector = OpenDsrConnector("opendsr-e2e", OpenDsrSettings(
        base_url=fake.url, processor_domain=DOMAIN, api_key_env="E2E_OPENDSR_KEY",
        api_secret_env="E2E_OPENDSR_SECRET", callback_url=receiver.url))
    fake.add_person("email", "cb.person@example.test")
    try:
        context = TaskContext(request_id=RID, system="opendsr-e2e", attempt=1,
                              received_at=datetime(2026, 11, 20, 9, tzinfo=UTC))
        assert connector.erase(email_subject("cb.person@example.test"), context).status == "pending"
        fake.wait_callbacks()
        fake.finish_all()
        fake.wait_callbacks()
    finally:
        connector.close()
        receiver.stop()
    # deliveries run in parallel: in_progress and completed may arrive in either order
    assert sorted(b["request_status"] for b in receiver.accepted) == ["completed", "in_progress", "pending"]
    assert receiver.refused == []
    assert any(status == 500 for _, _, status in fake.callback_log), "the first delivery failed..."
    assert sum(1 for _, s, _ in fake.callback_log if s == "pending") == 2, "...and was retried"
    assert not fake.holds("email", "cb.person@example.test")
