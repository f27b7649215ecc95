"""The HTTP intake's outbox: a 202 is as durable as the ledger, the relay publishes what the broker did not
take (or lost) until the ledger shows the request planned, then forgets it; no identity in clear."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from kafka.errors import KafkaConnectionError

from pipeline.crypto import init_keys, load_keys, seal_for_intake
from pipeline.deadlines import due_at
from pipeline.desk.app import DeskSecurity, Publisher, create_app
from pipeline.ledger import Ledger, open_ledger
from pipeline.ledger.accounts import Access
from pipeline.ledger.outbox import Outbox, outbox_table
from pipeline.outbox import OutboxRelay
from pipeline.streaming import topics
from pipeline.streaming.publishing import Message, Received
from schemas import ErasurePlanned, ErasureRequested, Identity, PlannedTarget, SealedIdentities
from schemas import SubjectIdentities as Subject
from tests.desk_server import serve
from tests.fakes.signers import TestSigners
from tests.harness import wait_until

EMAIL = "outbox.person@example.test"


class Broker:
    """Stands for the broker as the desk and the relay see it: up (keeps what it is sent) or down."""

    def __init__(self) -> None:
        self.up = True
        self.records: list[tuple[str, bytes, bytes]] = []

    def send(self, topic: str, key: bytes, value: bytes, *_: object) -> None:
        if not self.up:
            raise KafkaConnectionError("the broker is away")
        self.records.append((topic, key, value))

    async def send_all(self, messages: Sequence[Message]) -> None:
        for message in messages:
            self.send(message.topic, message.key, message.value)

    async def dead_letter(self, record: Received, reason: str, consumer: str) -> None:
        raise AssertionError("the relay dead-letters nothing")

    def requests(self) -> list[str]:
        return [key.decode() for topic, key, _ in self.records if topic == topics.REQUESTS]


class Intake:
    def __init__(self, url: str, token: str, public_key: bytes, ledger: Ledger, broker: Broker) -> None:
        self.url, self.token, self.public_key = url, token, public_key
        self.ledger, self.broker = ledger, broker

    def post(self) -> str:
        """A request as the contact-form backend sends it; returns once the desk tried to publish it."""
        sealed = seal_for_intake(self.public_key, Subject(
            identities=[Identity(identity_type="email", identity_value=EMAIL)]))
        body = {"request_id": str(uuid.uuid4()), "received_at": datetime.now(UTC).isoformat(),
                "channel": "http_api", "identities": sealed.model_dump()}
        response = httpx.post(f"{self.url}/v1/erasure-requests", json=body, timeout=30,
                              headers={"authorization": f"Bearer {self.token}"})
        assert response.status_code == 202, response.text
        rid = str(response.json()["request_id"])
        # The desk publishes after answering; once it did, the row counts it (unless the broker was away).
        wait_until(lambda: not self.broker.up or self.rows()[rid].attempts == 1, 10, "the desk's publication")
        return rid

    def rows(self) -> dict[str, sa.Row[object]]:
        with self.ledger.engine.connect() as conn:
            return {row.request_id: row for row in conn.execute(sa.select(outbox_table))}

    def relay(self, now: datetime) -> int:
        return asyncio.run(OutboxRelay(Outbox(self.ledger.engine, self.ledger.writer, 30, 600),
                                       self.broker).run(now))


@pytest.fixture
def intake(tmp_path: Path) -> Iterator[Intake]:
    ledger = open_ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    token = Access(ledger).add_client("contact-form", datetime.now(UTC))
    init_keys(tmp_path / "keys")
    broker = Broker()
    app = create_app(ledger, Access(ledger), Publisher(broker.send, TestSigners().signer("desk")), None, "s",
                     topics.task_topic, topics.REQUESTS, security=DeskSecurity())
    with serve(app) as url:
        yield Intake(url, token, load_keys(tmp_path / "keys").intake_public, ledger, broker)
    ledger.close()


def plan(ledger: Ledger, request_id: str) -> None:
    """What the aggregator records once the router planned the request."""
    now = datetime.now(UTC)
    sealed = SealedIdentities(alg="secretbox-xsalsa20poly1305", key_id=request_id, ciphertext="c2VjcmV0")
    ledger.record([ErasurePlanned(request_id=request_id, received_at=now, due_at=due_at(now),
                                  subject_ref="sr_o", identities=sealed, planned_at=now,
                                  targets=[PlannedTarget(system="brevo", expected_turnaround_s=60)])], now)


def test_accepted_while_the_broker_is_away_then_published_by_the_relay(intake: Intake) -> None:
    intake.broker.up = False
    rid = intake.post()  # 202 without a broker: the request is in the ledger's outbox
    row = intake.rows()[rid]
    assert row.attempts == 0 and row.published_at is None
    assert EMAIL not in row.body and ErasureRequested.model_validate_json(row.body).request_id == rid
    now = datetime.now(UTC)
    assert intake.relay(now) == 0, "not due yet: the desk may still publish it"
    intake.broker.up = True
    assert intake.relay(now + timedelta(seconds=11)) == 1
    assert intake.broker.requests() == [rid]
    assert intake.broker.records[0][2] == row.body.encode(), "published as the client sent it"
    assert intake.rows()[rid].attempts == 1


def test_published_at_once_and_forgotten_once_planned(intake: Intake) -> None:
    rid = intake.post()
    assert intake.broker.requests() == [rid]  # the desk published it right after answering
    row = intake.rows()[rid]
    assert row.attempts == 1 and row.published_at is not None
    plan(intake.ledger, rid)
    assert intake.relay(datetime.now(UTC) + timedelta(seconds=31)) == 0
    assert rid not in intake.rows() and intake.broker.requests() == [rid], "planned: dropped, not re-sent"


def test_lost_by_the_broker_it_is_published_again_later_and_later(intake: Intake) -> None:
    rid = intake.post()
    start = datetime.now(UTC)
    assert intake.relay(start + timedelta(seconds=29)) == 0  # the router has 30 s to plan it
    assert intake.relay(start + timedelta(seconds=31)) == 1  # not planned: the broker lost it
    assert intake.relay(start + timedelta(seconds=31 + 59)) == 0  # then after 60 s, 120 s...
    assert intake.relay(start + timedelta(seconds=31 + 61)) == 1
    assert intake.broker.requests() == [rid] * 3 and intake.rows()[rid].attempts == 3
    plan(intake.ledger, rid)
    assert intake.relay(start + timedelta(hours=1)) == 0 and intake.rows() == {}


def test_a_duplicate_post_keeps_one_row(intake: Intake) -> None:
    rid = intake.post()
    [(_, _, body)] = intake.broker.records
    again = httpx.post(f"{intake.url}/v1/erasure-requests", json=json.loads(body), timeout=30,
                       headers={"authorization": f"Bearer {intake.token}"})
    assert again.status_code == 202 and list(intake.rows()) == [rid]
