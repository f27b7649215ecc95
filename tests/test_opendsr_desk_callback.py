"""The desk receives OpenDSR status callbacks: verified before parsing, then recorded as outcomes."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from connectors.processors.opendsr_callbacks import CallbackTrust
from pipeline.deadlines import due_at
from pipeline.desk.app import OpenDsrCallbacks, Publisher, create_app
from pipeline.ledger import open_ledger
from pipeline.ledger.accounts import Access
from pipeline.streaming import topics
from schemas import ErasureOutcome, ErasurePlanned, PlannedTarget, SealedIdentities
from tests.desk_server import serve
from tests.fakes.opendsr import FakeOpenDsr, make_pki, sign
from tests.fakes.signers import TestSigners

DOMAIN = "opendsr.fake-processor.test"
CALLBACK_URL = "https://erasure.site.example/opendsr/callbacks"


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[tuple[str, list[tuple[str, bytes, bytes]], str, object]]:
    pki = make_pki(DOMAIN)
    fake = FakeOpenDsr({("key", "secret")}, pki.key, pki.leaf_pem, DOMAIN)
    fake.start()
    ledger = open_ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    rid = str(uuid.uuid4())
    now = datetime.now(UTC)
    ledger.record([ErasurePlanned(
        request_id=rid, received_at=now, due_at=due_at(now), subject_ref="sr_o", planned_at=now,
        identities=SealedIdentities(alg="secretbox-xsalsa20poly1305", key_id=rid, ciphertext="c2VjcmV0"),
        targets=[PlannedTarget(system="mparticle", expected_turnaround_s=60)]),
        ErasureOutcome(request_id=rid, system="mparticle", attempt=1, status="pending", occurred_at=now),
    ], now)
    sent: list[tuple[str, bytes, bytes]] = []
    trust = CallbackTrust.from_pem(pki.ca_pem, discovery_urls={DOMAIN: f"{fake.url}/v2/discovery"})
    app = create_app(ledger, Access(ledger), Publisher(lambda t, k, v, h: sent.append((t, k, v)),
                                                       TestSigners().signer("desk")), None, "s",
                     topics.task_topic, topics.REQUESTS, None,
                     OpenDsrCallbacks({DOMAIN: "mparticle"}, trust, CALLBACK_URL, topics.OUTCOMES, "site"))
    with serve(app) as url:
        yield url, sent, rid, pki
    fake.stop()
    ledger.close()


def callback(url: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(f"{url}/opendsr/callbacks", content=body, headers={"content-type": "application/json",
                                                                         **headers})


def body_for(rid: str, status: str) -> bytes:
    return json.dumps({"controller_id": "site", "subject_request_id": rid, "request_status": status,
                       "expected_completion_time": "2026-12-01T00:00:00Z",
                       "status_callback_url": CALLBACK_URL, "api_version": "2.0"}).encode()


def test_signed_completion_becomes_an_erased_outcome(desk) -> None:  # type: ignore[no-untyped-def]
    url, sent, rid, pki = desk
    body = body_for(rid, "completed")
    response = callback(url, body, {"X-OpenDSR-Processor-Domain": DOMAIN,
                                    "X-OpenDSR-Signature": sign(pki.key, body)})
    assert response.status_code == 202
    assert [(t, k) for t, k, _ in sent] == [(topics.OUTCOMES, rid.encode())]
    outcome = json.loads(sent[0][2])
    assert (outcome["system"], outcome["status"], outcome["attempt"]) == ("mparticle", "erased", 1)


def test_pending_status_records_nothing(desk) -> None:  # type: ignore[no-untyped-def]
    url, sent, rid, pki = desk
    body = body_for(rid, "in_progress")
    assert callback(url, body, {"X-OpenDSR-Processor-Domain": DOMAIN,
                                "X-OpenDSR-Signature": sign(pki.key, body)}).status_code == 202
    assert sent == []


def test_refusals(desk) -> None:  # type: ignore[no-untyped-def]
    url, sent, rid, pki = desk
    body = body_for(rid, "completed")
    tampered = body.replace(b"completed", b"cancelled")
    assert callback(url, tampered, {"X-OpenDSR-Processor-Domain": DOMAIN,
                                    "X-OpenDSR-Signature": sign(pki.key, body)}).status_code == 403
    assert callback(url, body, {"X-OpenDSR-Processor-Domain": "evil.example",
                                "X-OpenDSR-Signature": sign(pki.key, body)}).status_code == 401
    not_json = b"{not json"
    assert callback(url, not_json, {"X-OpenDSR-Processor-Domain": DOMAIN,
                                    "X-OpenDSR-Signature": sign(make_pki(DOMAIN).key, not_json)}
                    ).status_code == 403, "the signature is checked before the body is parsed"
    assert sent == []
