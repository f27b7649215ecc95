"""OpenDSR callbacks are bound to the attempt they answer, and checked before anything is recorded.

A real desk, a real (fake) processor calling it back, a ledger driven as the aggregator would:
a `cancelled` callback captured from the first attempt and replayed after an officer's retry is
refused (409) and the new attempt completes; a callback for another controller_id is refused;
an upper-case processor domain header is accepted; a callback for a system already final is
refused.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from connectors.base import TaskContext
from connectors.processors.opendsr import OpenDsrConnector, OpenDsrSettings
from connectors.processors.opendsr_callbacks import CallbackTrust
from pipeline.deadlines import due_at
from pipeline.desk.app import OpenDsrCallbacks, Publisher, create_app
from pipeline.ledger import open_ledger
from pipeline.ledger.accounts import Access
from pipeline.ledger.actions import retry_system
from pipeline.ledger.store import Ledger
from pipeline.streaming import topics
from schemas import ErasureOutcome, ErasurePlanned, PlannedTarget, SealedIdentities
from tests.desk_server import serve
from tests.fakes.opendsr import FakeOpenDsr, Pki, make_pki, sign
from tests.fakes.signers import TestSigners
from tests.processors.common import email_subject

DOMAIN = "opendsr.fake-processor.test"
OURS = "controller-ours"
SYSTEM = "mparticle"
EMAIL = "replay.target@example.test"


@dataclass
class Stack:
    url: str
    sent: list[ErasureOutcome]
    rid: str
    pki: Pki
    fake: FakeOpenDsr
    ledger: Ledger
    connector: OpenDsrConnector

    @property
    def callback_url(self) -> str:
        return f"{self.url}/opendsr/callbacks"

    def erase(self, attempt: int) -> None:
        """The connector worker's create at `attempt`, its pending outcome recorded."""
        received = datetime.now(UTC)
        result = self.connector.erase(email_subject(EMAIL), TaskContext(
            request_id=self.rid, system=SYSTEM, attempt=attempt, received_at=received))
        assert result.status == "pending"
        self.record([ErasureOutcome(request_id=self.rid, system=SYSTEM, attempt=attempt, status="pending",
                                    occurred_at=received)])

    def record(self, outcomes: list[ErasureOutcome]) -> None:
        self.ledger.record(outcomes, datetime.now(UTC))

    def row(self) -> tuple[str, int]:
        view = self.ledger.request(self.rid, datetime.now(UTC))
        assert view is not None
        row = next(s for s in view.systems if s.system == SYSTEM)
        return row.status, row.attempt

    def post(self, body: bytes, headers: dict[str, str]) -> httpx.Response:
        return httpx.post(self.callback_url, content=body,
                          headers={"content-type": "application/json", **headers})

    def signed(self, **fields: str) -> tuple[bytes, dict[str, str]]:
        body = json.dumps({"controller_id": OURS, "subject_request_id": self.rid,
                           "request_status": "completed", "expected_completion_time": "2026-12-01T00:00:00Z",
                           "status_callback_url": self.callback_url, **fields}).encode()
        return body, {"X-OpenDSR-Processor-Domain": DOMAIN, "X-OpenDSR-Signature": sign(self.pki.key, body)}


@pytest.fixture
def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    monkeypatch.setenv("SEC_OPENDSR_KEY", "key")
    monkeypatch.setenv("SEC_OPENDSR_SECRET", "secret")
    pki = make_pki(DOMAIN)
    fake = FakeOpenDsr({("key", "secret")}, pki.key, pki.leaf_pem, DOMAIN, controller_id=OURS)
    fake.start()
    fake.add_person("email", EMAIL)
    ledger = open_ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    rid, now = str(uuid.uuid4()), datetime.now(UTC)
    ledger.record([ErasurePlanned(
        request_id=rid, received_at=now, due_at=due_at(now), subject_ref="sr_replay", planned_at=now,
        identities=SealedIdentities(alg="secretbox-xsalsa20poly1305", key_id=rid, ciphertext="c2VjcmV0"),
        targets=[PlannedTarget(system=SYSTEM, expected_turnaround_s=3600)])], now)
    sent: list[ErasureOutcome] = []
    trust = CallbackTrust.from_pem(pki.ca_pem, discovery_urls={DOMAIN: f"{fake.url}/v2/discovery"})
    callbacks = OpenDsrCallbacks({DOMAIN: SYSTEM}, trust, None, topics.OUTCOMES, OURS)
    app = create_app(ledger, Access(ledger), Publisher(
        lambda t, k, v, h: sent.append(ErasureOutcome.model_validate_json(v)),
        TestSigners().signer("desk")), None, "s",
        topics.task_topic, topics.REQUESTS, None, callbacks)
    with serve(app) as url:
        callbacks.callback_url = f"{url}/opendsr/callbacks"  # known once the desk listens
        connector = OpenDsrConnector(SYSTEM, OpenDsrSettings(
            base_url=fake.url, processor_domain=DOMAIN, api_key_env="SEC_OPENDSR_KEY",
            api_secret_env="SEC_OPENDSR_SECRET", callback_url=callbacks.callback_url))
        try:
            yield Stack(url, sent, rid, pki, fake, ledger, connector)
        finally:
            connector.close()
    fake.stop()
    ledger.close()


def test_replayed_cancellation_does_not_fail_the_officers_retry(stack: Stack) -> None:
    stack.erase(attempt=1)
    stack.fake.set_status(stack.rid, "cancelled")  # the processor gives up on the first attempt
    stack.fake.wait_callbacks()
    assert [(o.status, o.attempt) for o in stack.sent] == [("failed", 1)]
    stack.record(stack.sent)
    captured = next((body, headers) for status, body, headers in stack.fake.sent_callbacks
                    if status == "cancelled")
    task = retry_system(stack.ledger, stack.rid, SYSTEM, "officer", datetime.now(UTC))
    stack.erase(attempt=task.attempt)
    stack.sent.clear()

    replayed = stack.post(*captured)

    assert replayed.status_code == 409
    assert "stale" in replayed.json()["detail"]
    assert stack.sent == [], "nothing published for the replayed callback"
    assert stack.row() == ("pending", task.attempt), "the new attempt is not failed"
    # The new attempt's own callbacks still decide it.
    stack.fake.finish_all()
    stack.fake.wait_callbacks()
    assert [(o.status, o.attempt) for o in stack.sent] == [("erased", task.attempt)]
    assert not stack.fake.holds("email", EMAIL)


def test_callback_for_another_controller_is_refused(stack: Stack) -> None:
    stack.erase(attempt=1)
    body, headers = stack.signed(controller_id="someone-else")
    response = stack.post(body, headers)
    assert response.status_code == 403
    assert stack.sent == []


def test_upper_case_domain_header_is_accepted(stack: Stack) -> None:
    stack.erase(attempt=1)
    body, headers = stack.signed()
    response = stack.post(body, {**headers, "X-OpenDSR-Processor-Domain": DOMAIN.upper()})
    assert response.status_code == 202
    assert [(o.system, o.status, o.attempt) for o in stack.sent] == [(SYSTEM, "erased", 1)]


def test_callback_for_a_system_already_final_is_refused(stack: Stack) -> None:
    stack.erase(attempt=1)
    body, headers = stack.signed()
    assert stack.post(body, headers).status_code == 202
    stack.record(stack.sent)
    stack.sent.clear()
    again = stack.post(*stack.signed(request_status="cancelled"))
    assert again.status_code == 409
    assert "already final" in again.json()["detail"]
    assert stack.sent == [] and stack.row() == ("erased", 1)
