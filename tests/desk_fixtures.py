"""A desk on a ledger holding recorded outcomes: overdue, manual, failed, held, fresh."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from kafka import KafkaProducer

from pipeline.deadlines import due_at
from pipeline.desk.app import DeskSecurity, Publisher, create_app
from pipeline.devstack.broker import Broker
from pipeline.kafka_clients import ensure_topics
from pipeline.ledger import Ledger, open_ledger
from pipeline.ledger.accounts import Access
from pipeline.policy import load_policy
from pipeline.streaming import topics
from schemas import (
    ErasureOutcome,
    ErasurePlanned,
    Evidence,
    Hold,
    OutcomeError,
    PlannedTarget,
    ResidualData,
    SealedIdentities,
)
from tests.desk_server import serve
from tests.fakes.signers import TestSigners

OFFICER = ("olivia", "officer-password-1")
VIEWER = ("victor", "viewer-password-1")
SYSTEMS = ["brevo", "paper-vendor", "site-db"]
# The test desk is served on http://127.0.0.1: a `Secure` cookie would never come back.
PLAIN_HTTP = DeskSecurity(cookie_secure=False)


@dataclass
class Desk:
    url: str
    ledger: Ledger
    access: Access
    overdue_manual: str
    failed: str
    held: str
    fresh: str
    bootstrap: str


def _plan(rid: str, received: datetime) -> ErasurePlanned:
    return ErasurePlanned(
        request_id=rid, received_at=received, due_at=due_at(received), subject_ref=f"sr_{rid[:8]}",
        identities=SealedIdentities(alg="secretbox-xsalsa20poly1305", key_id=rid, ciphertext="c2VjcmV0"),
        channel="contact_form", verification="email_confirmation", planned_at=received,
        targets=[PlannedTarget(system=s, expected_turnaround_s=3600) for s in SYSTEMS])


def _outcome(rid: str, system: str, status: str, at: datetime, **extra: object) -> ErasureOutcome:
    return ErasureOutcome(request_id=rid, system=system, attempt=1, status=status,  # type: ignore[arg-type]
                          occurred_at=at, **extra)  # type: ignore[arg-type]


def seeded_desk(root: Path, kafka: Broker) -> Iterator[Desk]:
    now = datetime.now(UTC)
    ledger = open_ledger(f"sqlite:///{root / 'ledger.db'}")
    access = Access(ledger)
    access.set_user(OFFICER[0], "officer", OFFICER[1], now)
    access.set_user(VIEWER[0], "viewer", VIEWER[1], now)
    ids = [str(uuid.uuid4()) for _ in range(4)]
    overdue, failed, held, fresh = ids
    old = now - timedelta(days=40)
    ledger.record([_plan(overdue, old), _outcome(overdue, "brevo", "erased", old,
                                                 evidence=Evidence(http_status=204, records_affected=1)),
                   _outcome(overdue, "site-db", "erased", old),
                   _outcome(overdue, "paper-vendor", "manual", old,
                            evidence=Evidence(reference="e-mail dpo@paper-vendor.example"))], old)
    recent = now - timedelta(days=2)
    ledger.record([_plan(failed, recent), _outcome(failed, "brevo", "failed", recent, error=OutcomeError(
        kind="auth", message="brevo: HTTP 401 from DELETE /v3/contacts/{identifier}")),
        _outcome(failed, "site-db", "erased", recent), _outcome(failed, "paper-vendor", "not_found", recent)],
        recent)
    purge = datetime(2026, 12, 30, tzinfo=UTC)  # the processor's own commitment, as it gave it
    ledger.record([_plan(held, recent), _outcome(held, "brevo", "erased", recent, evidence=Evidence(
                       http_status=200, assurance="accepted", completes_by=purge,
                       residual=[ResidualData(what="anonymised contact record", until=purge),
                                 ResidualData(what="deleted customer record (id, deleted flag)")])),
                   _outcome(held, "paper-vendor", "erased", recent),
                   _outcome(held, "site-db", "held", recent, holds=[Hold(
                       data_category="invoices", legal_basis="GDPR Art. 17(3)(b): legal obligation",
                       citation="Code de commerce, art. L123-22", retain_until=now + timedelta(days=3650))])],
                  recent)
    ledger.record([_plan(fresh, now - timedelta(days=3))], now)
    ensure_topics(kafka.bootstrap, topics.all_topics(SYSTEMS), 2)
    producer = KafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all", enable_idempotence=True)

    def send(topic: str, key: bytes, value: bytes, headers: list[tuple[str, bytes]]) -> None:
        producer.send(topic, key=key, value=value, headers=headers).get(30)

    policy, _ = load_policy(None)
    publisher = Publisher(send, TestSigners().signer("desk"))
    app = create_app(ledger, access, publisher, policy, "test-session-secret", topics.task_topic,
                     topics.REQUESTS, security=PLAIN_HTTP)
    with serve(app) as url:
        yield Desk(url, ledger, access, overdue, failed, held, fresh, kafka.bootstrap)
    producer.close()
    ledger.close()
