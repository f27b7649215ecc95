"""The router without a broker: an in-memory publisher and a real SQLite ledger."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from connectors.retry import RetryPolicy
from pipeline.crypto import PipelineKeys, init_keys, load_keys, open_with_data_key, seal_for_intake
from pipeline.devstack.demo import demo_systems
from pipeline.keywrap import AesGcmKeyWrapper
from pipeline.ledger import Ledger, open_ledger
from pipeline.register import SystemsRegister
from pipeline.streaming import topics
from pipeline.streaming.publishing import Received
from pipeline.streaming.router import Router
from schemas import ErasureRequested, Identity, Scope, SealedIdentities, SubjectIdentities
from tests.fakes.flaky_ledger import FlakyLedger
from tests.fakes.publisher import MemoryPublisher
from tests.fakes.signers import TestSigners

REGISTER = SystemsRegister.model_validate(demo_systems("sqlite:///x.db", "http://127.0.0.1:1"))
EMAIL = "router.test@example.test"
NO_WAIT = RetryPolicy(base_s=0.0, jitter=False)
SIGNERS = TestSigners("site-db", "brevo")


@pytest.fixture
def keys(tmp_path: Path) -> PipelineKeys:
    init_keys(tmp_path / "keys")
    return load_keys(tmp_path / "keys", need_private=True)


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    ledger = open_ledger(f"sqlite:///{tmp_path / 'ledger.db'}", AesGcmKeyWrapper.generate())
    yield ledger
    ledger.close()


def subject(email: str = EMAIL) -> SubjectIdentities:
    return SubjectIdentities(identities=[Identity(identity_type="email", identity_value=email)])


def request_record(keys: PipelineKeys, offset: int, request_id: str | None = None,
                   scope: Scope | None = None, **fields: str) -> Received:
    """A request as the intake client publishes it (signed by `intake`; by `sweep` on the retention
    channel)."""
    request = ErasureRequested(request_id=request_id or str(uuid.uuid4()),
                               received_at=datetime(2026, 11, 26, 10, tzinfo=UTC),
                               identities=seal_for_intake(keys.intake_public, subject()), scope=scope,
                               **fields)  # type: ignore[arg-type]
    return SIGNERS.received(topics.REQUESTS, offset, request.request_id.encode(), request)


def route(router: Router, *records: Received) -> list[str]:
    return asyncio.run(router.route(list(records)))


def test_plan_first_then_one_task_per_system_sealed_under_the_ledgers_data_key(
        keys: PipelineKeys, ledger: Ledger) -> None:
    publisher = MemoryPublisher()
    record = request_record(keys, 0)
    rid = record.key.decode()  # type: ignore[union-attr]
    assert route(Router(REGISTER, keys, ledger, publisher, SIGNERS.verifier()), record) == [rid]
    assert [m.topic for m in publisher.sent] == [
        topics.OUTCOMES, topics.task_topic("site-db"), topics.task_topic("brevo")]
    assert all(m.key == rid.encode() for m in publisher.sent)
    plan, *tasks = [json.loads(m.value) for m in publisher.sent]
    assert plan["event_type"] == "erasure.planned"
    assert [t["system"] for t in plan["targets"]] == ["site-db", "brevo"]
    assert [t["system"] for t in tasks] == ["site-db", "brevo"], "each task names its own system"
    data_key = ledger.data_key(rid)
    assert data_key is not None
    for task in tasks:
        assert task["attempt"] == 1 and task["identities"] == plan["identities"]
        sealed = SealedIdentities.model_validate(task["identities"])
        assert open_with_data_key(data_key, sealed) == subject()
    assert EMAIL not in json.dumps([json.loads(m.value) for m in publisher.sent])
    assert ledger.grant_data_keys({rid: b"x" * 32}, datetime.now(UTC))[rid].tasks_published


def test_scope_limits_the_tasks(keys: PipelineKeys, ledger: Ledger) -> None:
    publisher = MemoryPublisher()
    route(Router(REGISTER, keys, ledger, publisher, SIGNERS.verifier()),
          request_record(keys, 0, scope=Scope(systems=["brevo"])))
    assert [m.topic for m in publisher.sent] == [topics.OUTCOMES, topics.task_topic("brevo")]


def test_a_request_seen_again_is_routed_once(keys: PipelineKeys, ledger: Ledger) -> None:
    publisher = MemoryPublisher()
    router = Router(REGISTER, keys, ledger, publisher, SIGNERS.verifier())
    rid = str(uuid.uuid4())
    assert route(router, request_record(keys, 0, rid), request_record(keys, 1, rid)) == [rid]
    assert len(publisher.values(topics.OUTCOMES)) == 1, "twice in one batch: planned once"
    assert route(router, request_record(keys, 2, rid)) == []
    assert len(publisher.sent) == 3, "in a later batch: nothing published"


def test_invalid_requests_are_dead_lettered_by_coordinates_and_field_names_only(
        keys: PipelineKeys, ledger: Ledger, tmp_path: Path) -> None:
    publisher = MemoryPublisher()
    init_keys(tmp_path / "other-keys")
    other = load_keys(tmp_path / "other-keys", need_private=True)
    clear = json.dumps({"event_type": "erasure.requested", "request_id": str(uuid.uuid4()),
                        "received_at": "2026-11-26T10:00:00+00:00",
                        "identities": [{"identity_type": "email", "identity_value": EMAIL}]}).encode()
    batch = [SIGNERS.signed(Received(topics.REQUESTS, 1, 7, b"junk", b"{not json")),
             SIGNERS.signed(Received(topics.REQUESTS, 2, 8, None, clear)),
             request_record(other, 9),  # sealed for another intake key
             request_record(keys, 10)]
    routed = asyncio.run(Router(REGISTER, keys, ledger, publisher, SIGNERS.verifier()).route(batch))
    assert len(routed) == 1
    letters = publisher.dead_letters()
    assert [(d["source_topic"], d["partition"], d["offset"], d["consumer"]) for d in letters] == [
        (topics.REQUESTS, 1, 7, "router"), (topics.REQUESTS, 2, 8, "router"),
        (topics.REQUESTS, 0, 9, "router")]
    assert "identities" in letters[1]["reason"]
    assert EMAIL not in json.dumps(letters)
    assert [m.key for m in publisher.sent if m.topic == topics.DEADLETTER] == [b"junk", b"", batch[2].key]


def test_a_failing_ledger_is_retried_in_place(keys: PipelineKeys, ledger: Ledger) -> None:
    publisher = MemoryPublisher()
    flaky = FlakyLedger(ledger, "grant_data_keys")
    record = request_record(keys, 0)
    router = Router(REGISTER, keys, flaky, publisher, SIGNERS.verifier(), ledger_retry=NO_WAIT)  # type: ignore[arg-type]
    assert route(router, record) == [record.key.decode()]  # type: ignore[union-attr]
    assert flaky.failures == 0 and len(publisher.sent) == 3


def test_the_router_needs_the_private_keys(keys: PipelineKeys, ledger: Ledger) -> None:
    public_only = PipelineKeys(intake_public=keys.intake_public, intake_private=None, subject_ref_hmac=None)
    with pytest.raises(ValueError, match="private key"):
        Router(REGISTER, public_only, ledger, MemoryPublisher(), SIGNERS.verifier())


def test_unverified_requests_are_dead_lettered_and_never_opened(keys: PipelineKeys, ledger: Ledger) -> None:
    """Unsigned, signed by a connector, altered after signing: none is planned; the reason says why."""
    publisher = MemoryPublisher()
    good = request_record(keys, 0)
    unsigned = request_record(keys, 1)._replace(headers=())
    by_connector = SIGNERS.signed(request_record(keys, 2), "connector:brevo")
    altered_from = request_record(keys, 3)
    altered = altered_from._replace(value=altered_from.value.replace(b"2026-11-26", b"2026-11-25"))
    routed = route(Router(REGISTER, keys, ledger, publisher, SIGNERS.verifier()),
                   good, unsigned, by_connector, altered)
    assert routed == [good.key.decode()]  # type: ignore[union-attr]
    reasons = {d["offset"]: d["reason"] for d in publisher.dead_letters()}
    assert set(reasons) == {1, 2, 3}
    assert reasons[1].startswith("unsigned: a request")
    assert reasons[2] == "'connector:brevo' may not sign a request"
    assert "does not verify" in reasons[3]
    for record in (unsigned, by_connector, altered):
        assert ledger.data_key(record.key.decode()) is None  # type: ignore[union-attr]


def test_only_the_sweeps_may_send_a_retention_request(keys: PipelineKeys, ledger: Ledger) -> None:
    publisher = MemoryPublisher()
    swept = request_record(keys, 0, channel="retention", verification="not_applicable")
    forged = SIGNERS.signed(request_record(keys, 1, channel="retention", verification="not_applicable"))
    routed = route(Router(REGISTER, keys, ledger, publisher, SIGNERS.verifier()), swept, forged)
    assert routed == [swept.key.decode()]  # type: ignore[union-attr]
    [letter] = publisher.dead_letters()
    assert letter["offset"] == 1
    assert letter["reason"] == "'intake' may not sign a request on the 'retention' channel (only 'sweep' may)"
