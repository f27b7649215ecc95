"""Forged plans, outcomes and tasks change nothing and land in the dead letters with a reason.

Before signed events, anyone able to write to a topic could complete a live request with two
forged outcomes, empty a request's plan, keep a data key forever with a `held` until 9999, or
have a connector run a release task nobody asked for. Unit tests first (no broker), then the
real pipeline: a request completes with signatures on; records written by a plain producer
complete nothing.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner
from kafka import KafkaProducer, TopicPartition
from nacl.signing import SigningKey

from connectors.base import EraseResult
from pipeline.cli import main
from pipeline.codec import encode
from pipeline.deadlines import due_at
from pipeline.ledger import Ledger, open_ledger
from pipeline.settings import Settings
from pipeline.signing import SIGNATURE_HEADER, SIGNER_HEADER, Signer, Unverified
from pipeline.signing_keys import load_register, load_signer, register_verifier, rotate
from pipeline.streaming import topics
from pipeline.streaming.aggregator import Aggregator
from pipeline.streaming.publishing import Received
from pipeline.worker.runtime import ConnectorWorker
from schemas import DeadLetter, ErasureOutcome, ErasurePlanned, Hold, PlannedTarget, SealedIdentities
from tests.fakes.publisher import MemoryPublisher
from tests.fakes.signers import TestSigners
from tests.harness import RunningPipeline, read_topic, wait_until
from tests.worker_fakes import (
    EMAIL,
    Keys,
    MemoryConsumer,
    MemoryProducer,
    Record,
    ScriptedConnector,
    sealed_task,
)
from tests.worker_fakes import SIGNERS as WORKER_SIGNERS
from tests.worker_fakes import task_record as signed_task_record

NOW = datetime.now(UTC)
SIGNERS = TestSigners("site-db", "brevo")
CRM_TOPIC = topics.task_topic("crm")
ROOT = Path(__file__).resolve().parents[2]


# -- the aggregator: plans and outcomes ----------------------------------------------------------
@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    ledger = open_ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    yield ledger
    ledger.close()


def plan(rid: str, systems: tuple[str, ...] = ("site-db", "brevo")) -> ErasurePlanned:
    return ErasurePlanned(
        request_id=rid, received_at=NOW, due_at=due_at(NOW), subject_ref="sr_x", planned_at=NOW,
        identities=SealedIdentities(alg="secretbox-xsalsa20poly1305", key_id=rid, ciphertext="c2VjcmV0"),
        targets=[PlannedTarget(system=s, expected_turnaround_s=60) for s in systems])


def outcome(rid: str, system: str, status: str = "erased", **extra: Any) -> ErasureOutcome:
    return ErasureOutcome(request_id=rid, system=system, attempt=1, status=status,  # type: ignore[arg-type]
                          occurred_at=NOW, **extra)


def forged(event: ErasurePlanned | ErasureOutcome, offset: int, signer: Signer | None = None) -> Received:
    """A record on the outcomes topic, unsigned or signed by `signer`, whoever that is."""
    key, value = event.request_id.encode(), encode(event)
    headers = signer.headers(topics.OUTCOMES, key, value) if signer else []
    return Received(topics.OUTCOMES, 0, offset, key, value, headers)


def genuine(event: ErasurePlanned | ErasureOutcome, offset: int) -> Received:
    return SIGNERS.received(topics.OUTCOMES, offset, event.request_id.encode(), event)


def take(ledger: Ledger, publisher: MemoryPublisher, *batch: Received) -> None:
    asyncio.run(Aggregator(ledger, publisher, SIGNERS.verifier()).take(list(batch)))


def reasons(publisher: MemoryPublisher) -> dict[int, str]:
    return {d["offset"]: d["reason"] for d in publisher.dead_letters()}


def test_forged_outcomes_complete_nothing_and_are_dead_lettered(ledger: Ledger) -> None:
    publisher = MemoryPublisher()
    rid = str(uuid.uuid4())
    hold = Hold(data_category="invoices", legal_basis="forged", citation="forged",
                retain_until=datetime(9999, 1, 1, tzinfo=UTC))
    take(ledger, publisher, genuine(plan(rid), 0),
         forged(outcome(rid, "site-db"), 1), forged(outcome(rid, "brevo", "held", holds=[hold]), 2),
         forged(outcome(rid, "site-db"), 3, SIGNERS.signer("connector:brevo")),  # another system's key
         forged(outcome(rid, "brevo"), 4, Signer("connector:brevo", SigningKey.generate())))  # a made-up key
    view = ledger.request(rid, NOW)
    assert view is not None and view.status == "in_progress"
    assert [e.kind for e in ledger.events(rid)] == ["planned"]
    assert ledger.holds_of(rid) == [] and publisher.values(topics.COMPLETED) == []
    found = reasons(publisher)
    assert sorted(found) == [1, 2, 3, 4]
    assert found[1].startswith("unsigned: an outcome of 'site-db'")
    assert found[3] == "'connector:brevo' may not sign an outcome of 'site-db'"
    assert "does not verify" in found[4]
    # The genuine outcomes still complete the request.
    take(ledger, publisher, genuine(outcome(rid, "site-db"), 5), genuine(outcome(rid, "brevo"), 6))
    assert [c["request_id"] for c in publisher.values(topics.COMPLETED)] == [rid]


def test_a_forged_empty_plan_is_refused_and_the_real_plan_counts(ledger: Ledger) -> None:
    publisher = MemoryPublisher()
    rid = str(uuid.uuid4())
    take(ledger, publisher, forged(plan(rid, ()), 0), forged(plan(rid, ()), 1, SIGNERS.signer("desk")),
         genuine(plan(rid), 2))
    view = ledger.request(rid, NOW)
    assert view is not None and view.status == "in_progress"
    assert {s.system for s in view.systems} == {"site-db", "brevo"}
    assert publisher.values(topics.COMPLETED) == []
    found = reasons(publisher)
    assert found[0].startswith("unsigned: a plan") and found[1] == "'desk' may not sign a plan"


def test_a_dead_letter_never_echoes_the_signer_header(ledger: Ledger) -> None:
    publisher = MemoryPublisher()
    record = forged(outcome(str(uuid.uuid4()), "brevo"), 0)._replace(
        headers=[(SIGNER_HEADER, EMAIL.encode()), (SIGNATURE_HEADER, b"AAAA")])
    take(ledger, publisher, record)
    [reason] = reasons(publisher).values()
    assert "not in the register" in reason and EMAIL not in json.dumps(publisher.dead_letters())


def test_the_signature_binds_topic_record_key_and_value() -> None:
    router, verifier = SIGNERS.signer("router"), SIGNERS.verifier()
    key, value = b"request-1", b'{"system": "brevo"}'
    headers = router.headers(topics.task_topic("brevo"), key, value)
    assert verifier.check(topics.task_topic("brevo"), key, value, headers, "task", "brevo") == "router"
    for topic, other_key, other_value in [(topics.task_topic("site-db"), key, value),
                                          (topics.task_topic("brevo"), b"request-2", value),
                                          (topics.task_topic("brevo"), key, value + b" ")]:
        with pytest.raises(Unverified, match="does not verify"):
            verifier.check(topic, other_key, other_value, headers, "task", "brevo")


# -- the connector worker: tasks -----------------------------------------------------------------
@pytest.fixture
def worker() -> Iterator[tuple[ConnectorWorker, MemoryProducer, ScriptedConnector, Keys]]:
    keys, producer, connector = Keys(), MemoryProducer(), ScriptedConnector(EraseResult("erased"))
    worker = ConnectorWorker(Settings(connector_threads=1), "crm", connector, "unused:9092", keys,
                             signer=WORKER_SIGNERS.signer("connector:crm"),
                             verifier=WORKER_SIGNERS.verifier(), producer=producer, consumer=MemoryConsumer())
    yield worker, producer, connector, keys
    worker._pool.shutdown(wait=True)


def accept(worker: ConnectorWorker, record: Record) -> None:
    worker.accept(TopicPartition(CRM_TOPIC, 0), record)
    worker.release_due()  # as the poll loop does after each poll
    worker._pool.shutdown(wait=True)


def dead_letters(producer: MemoryProducer) -> list[DeadLetter]:
    return [DeadLetter.model_validate_json(v) for v in producer.to(topics.DEADLETTER)]


def test_a_forged_release_task_is_not_executed(
        worker: tuple[ConnectorWorker, MemoryProducer, ScriptedConnector, Keys]) -> None:
    runner, producer, connector, keys = worker
    release = sealed_task(keys.key, purpose="release", attempt=2, release_categories=["invoices"])
    accept(runner, Record(0, encode(release), release.request_id.encode()))  # by a plain producer
    assert connector.calls == [] and producer.to(topics.OUTCOMES) == []
    [letter] = dead_letters(producer)
    assert letter.reason.startswith("unsigned: a task of 'crm'") and letter.consumer == "connector:crm"


def test_a_task_signed_for_another_systems_topic_fails_verification(
        worker: tuple[ConnectorWorker, MemoryProducer, ScriptedConnector, Keys]) -> None:
    runner, producer, connector, keys = worker
    moved = signed_task_record(0, sealed_task(keys.key), topic=topics.task_topic("billing"))
    accept(runner, moved)
    assert connector.calls == [] and producer.to(topics.OUTCOMES) == []
    [letter] = dead_letters(producer)
    assert "does not verify" in letter.reason


@pytest.mark.parametrize("signer", ["router", "desk", "connector:crm"])
def test_tasks_signed_by_their_entitled_signers_run_and_outcomes_are_signed(
        worker: tuple[ConnectorWorker, MemoryProducer, ScriptedConnector, Keys], signer: str) -> None:
    runner, producer, connector, keys = worker
    accept(runner, signed_task_record(0, sealed_task(keys.key), signer=signer))
    assert len(connector.calls) == 1 and dead_letters(producer) == []
    [(topic, key, value)] = producer.sent
    [headers] = producer.headers
    verifier = WORKER_SIGNERS.verifier()
    assert verifier.check(topic, key, value or b"", headers, "outcome", "crm") == "connector:crm"


# -- keys on disk: init, rotation ----------------------------------------------------------------
def test_keys_init_makes_private_keys_and_a_register_of_entitlements(tmp_path: Path) -> None:
    (tmp_path / "systems.yaml").write_text((ROOT / "deploy" / "systems.yaml").read_text())
    env = {"ERASURE_HOME_DIR": str(tmp_path), "ERASURE_SYSTEMS_FILE": str(tmp_path / "systems.yaml")}
    result = CliRunner().invoke(main, ["keys", "init"], env=env)
    assert result.exit_code == 0, result.output
    register = load_register(tmp_path / "keys" / "signers.json")
    may_sign = {s.id: s.may_sign for s in register.signers}
    assert may_sign["router"] == ["request", "plan", "task:*"]  # the outbox relay re-publishes requests
    assert may_sign["desk"] == ["request", "task:*", "outcome:*"]
    assert may_sign["intake"] == may_sign["sweep"] == ["request"]
    assert may_sign["connector:brevo"] == ["outcome:brevo", "task:brevo"]
    private = sorted((tmp_path / "keys" / "signing").iterdir())
    assert [p.name for p in private] == sorted(f"{s.replace(':', '.')}.key" for s in may_sign)
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in private)
    again = CliRunner().invoke(main, ["keys", "init"], env=env)
    assert "signing keys created: none" in again.output, "idempotent: existing keys are kept"


def test_keys_init_lets_an_older_registers_router_and_desk_sign_requests(tmp_path: Path) -> None:
    """A register from before signed requests: unedited entries get `request`, edited ones are kept."""
    env = {"ERASURE_HOME_DIR": str(tmp_path)}
    assert CliRunner().invoke(main, ["keys", "init"], env=env).exit_code == 0
    register_file = tmp_path / "keys" / "signers.json"
    old = json.loads(register_file.read_text())
    old["signers"] = [s for s in old["signers"] if s["id"] not in ("intake", "sweep")]
    for entry in old["signers"]:
        entry["may_sign"] = {"router": ["plan", "task:*"], "desk": ["task:*"]}[entry["id"]]  # desk: edited
    register_file.write_text(json.dumps(old))
    result = CliRunner().invoke(main, ["keys", "init"], env=env)
    assert result.exit_code == 0 and "signing keys created: intake, sweep" in result.output
    may_sign = {s.id: s.may_sign for s in load_register(register_file).signers}
    assert may_sign == {"router": ["request", "plan", "task:*"], "desk": ["task:*"],
                        "intake": ["request"], "sweep": ["request"]}


def test_a_rotated_key_replaces_the_old_one_after_the_grace_period(tmp_path: Path) -> None:
    env = {"ERASURE_HOME_DIR": str(tmp_path)}
    assert CliRunner().invoke(main, ["keys", "init"], env=env).exit_code == 0
    register_file, signing_dir = tmp_path / "keys" / "signers.json", tmp_path / "keys" / "signing"
    verifier = register_verifier(register_file)
    old = load_signer(signing_dir, "router")
    key, value = b"k", b"plan"
    rotated = rotate(register_file, signing_dir, "router", grace_s=3600, now=NOW)
    os.utime(register_file, ns=(time.time_ns(), time.time_ns() + 10**9))  # a visibly newer file
    new = load_signer(signing_dir, "router")
    assert bytes(new.key) != bytes(old.key) and len(rotated.keys) == 2
    for signer in (old, new):  # the verifier re-reads the register it had loaded before the rotation
        assert verifier.check(topics.OUTCOMES, key, value, signer.headers(topics.OUTCOMES, key, value),
                              "plan") == "router"
    verifier.clock = lambda: NOW + timedelta(hours=2)
    with pytest.raises(Unverified, match="does not verify"):
        verifier.check(topics.OUTCOMES, key, value, old.headers(topics.OUTCOMES, key, value), "plan")
    assert verifier.check(topics.OUTCOMES, key, value, new.headers(topics.OUTCOMES, key, value), "plan")
    refused = CliRunner().invoke(main, ["keys", "rotate", "nobody"], env=env)
    assert refused.exit_code == 1 and "no signer 'nobody'" in refused.output
    register_file.write_text("{not json")  # a bad hand edit: the register in force stays
    os.utime(register_file, ns=(time.time_ns(), time.time_ns() + 2 * 10**9))
    with pytest.raises(Unverified, match="unsigned"):  # a failure re-reads the file, which is refused
        verifier.check(topics.OUTCOMES, key, value, [], "plan")
    assert verifier.check(topics.OUTCOMES, key, value, new.headers(topics.OUTCOMES, key, value), "plan")


# -- end to end: the real pipeline, and a producer that is not a connector -----------------------
RUN = uuid.uuid4().hex[:8]
PERSON_EMAIL = f"signed.{RUN}@example.test"


@pytest.fixture(scope="module")
def pipeline(kafka, postgres_url_module: str, tmp_path_factory: pytest.TempPathFactory,  # type: ignore[no-untyped-def]
             ) -> Iterator[RunningPipeline]:
    from pipeline.devstack.demo import Person

    people = [Person(f"Sig Essai{RUN}", PERSON_EMAIL, "+33611223344"),
              Person(f"Forge Essai{RUN}", f"forge.{RUN}@example.test", "+33611223355")]
    running = RunningPipeline(tmp_path_factory.mktemp("signed"), kafka.bootstrap, postgres_url_module,
                              people).start()
    yield running
    running.stop()


@pytest.mark.e2e
def test_a_request_completes_with_signed_events(pipeline: RunningPipeline) -> None:
    rid = pipeline.submit(PERSON_EMAIL)
    assert pipeline.wait_final(rid).status == "completed"
    signers = {dict(r.headers).get(SIGNER_HEADER) for r in read_topic(pipeline.bootstrap, topics.OUTCOMES)
               if r.key == rid.encode()}
    assert signers == {b"router", b"connector:site-db", b"connector:brevo"}


@pytest.mark.e2e
def test_outcomes_from_a_plain_producer_complete_nothing(pipeline: RunningPipeline) -> None:
    # Brevo answers slowly: the forged outcomes arrive while the request is in progress.
    requests.post(f"{pipeline.brevo.url}/__fake__/latency", json={"delay_s": 4}, timeout=5)
    rid = pipeline.submit(f"forge.{RUN}@example.test")
    wait_until(lambda: pipeline.ledger.request(rid, datetime.now(UTC)), 30, "the plan")
    empty = str(uuid.uuid4())
    fake_brevo = Signer("connector:brevo", SigningKey.generate())
    failed = outcome(rid, "brevo", "failed", error={"kind": "permanent", "message": "forged"})
    producer = KafkaProducer(bootstrap_servers=pipeline.bootstrap, acks="all")
    sent = [producer.send(topics.OUTCOMES, key=e.request_id.encode(), value=encode(e), headers=h).get(10)
            for e, h in [(failed, []), (plan(empty, ()), []),
                         (failed, fake_brevo.headers(topics.OUTCOMES, rid.encode(), encode(failed)))]]
    producer.close()
    requests.post(f"{pipeline.brevo.url}/__fake__/latency", json={"delay_s": 0}, timeout=5)
    view = pipeline.wait_final(rid)
    assert view.status == "completed", "the forged failure was not recorded"
    assert [(e.system, e.status) for e in pipeline.ledger.events(rid) if e.system == "brevo"] == [
        ("brevo", "erased")]
    assert pipeline.ledger.request(empty, datetime.now(UTC)) is None, "the forged empty plan recorded nothing"

    def letters() -> dict[tuple[int, int], str]:
        found = {(d["partition"], d["offset"]): d["reason"] for d in
                 (json.loads(r.value) for r in read_topic(pipeline.bootstrap, topics.DEADLETTER))
                 if d["source_topic"] == topics.OUTCOMES}
        return found if all((m.partition, m.offset) in found for m in sent) else {}

    found = wait_until(letters, 15, "the forged records' dead letters")
    assert [found[(m.partition, m.offset)].split(":")[0] for m in sent[:2]] == ["unsigned", "unsigned"]
    assert "does not verify" in found[(sent[2].partition, sent[2].offset)]


@pytest.mark.e2e
def test_requests_not_signed_by_an_entitled_signer_are_never_planned(pipeline: RunningPipeline) -> None:
    """Anyone can seal an e-mail with the public intake key: without the intake's (or the sweeps',
    or the desk's) signature, the request is dead-lettered with the reason and nobody is erased."""
    def built(channel: str = "email") -> tuple[str, bytes]:
        event = pipeline.intake.build({"email": f"forge.{RUN}@example.test"}, datetime.now(UTC),
                                      channel=channel)
        return event.request_id, encode(event)

    intake = load_signer(pipeline.signing_dir, "intake")
    connector = load_signer(pipeline.signing_dir, "connector:brevo")
    stranger = Signer("stranger", SigningKey.generate())  # a signer the register does not list
    impostor = Signer("intake", SigningKey.generate())  # the intake's id, another key
    unsigned, by_stranger, by_impostor, by_connector, altered = (built() for _ in range(5))
    altered_value = altered[1].replace(b'"channel":"email"', b'"channel":"other"')
    assert altered_value != altered[1]

    def headers(signer: Signer, request: tuple[str, bytes]) -> list[tuple[str, bytes]]:
        return signer.headers(topics.REQUESTS, request[0].encode(), request[1])

    forged = [(unsigned, unsigned[1], [], "unsigned: a request"),
              (by_stranger, by_stranger[1], headers(stranger, by_stranger), "not in the register"),
              (by_impostor, by_impostor[1], headers(impostor, by_impostor), "does not verify"),
              (by_connector, by_connector[1], headers(connector, by_connector),
               "'connector:brevo' may not sign a request"),
              (altered, altered_value, headers(intake, altered), "does not verify")]
    producer = KafkaProducer(bootstrap_servers=pipeline.bootstrap, acks="all")
    sent = [producer.send(topics.REQUESTS, key=rid.encode(), value=value, headers=h).get(10)
            for (rid, _), value, h, _ in forged]
    producer.close()
    genuine_rid = pipeline.submit(f"forge.{RUN}@example.test")  # signed by the intake client: planned
    wait_until(lambda: pipeline.ledger.request(genuine_rid, datetime.now(UTC)), 30,
               "the signed request's plan")

    def letters() -> dict[tuple[int, int], dict[str, Any]]:
        found = {(d["partition"], d["offset"]): d for d in
                 (json.loads(r.value) for r in read_topic(pipeline.bootstrap, topics.DEADLETTER))
                 if d["source_topic"] == topics.REQUESTS}
        return found if all((m.partition, m.offset) in found for m in sent) else {}

    found = wait_until(letters, 30, "the forged requests' dead letters")
    for metadata, ((rid, _), _, _, expected) in zip(sent, forged, strict=True):
        letter = found[(metadata.partition, metadata.offset)]
        assert expected in letter["reason"] and letter["consumer"] == "router"
        assert pipeline.ledger.request(rid, datetime.now(UTC)) is None, f"{expected}: nothing planned"
        assert pipeline.ledger.data_key(rid) is None
    assert f"forge.{RUN}".encode() not in json.dumps(list(found.values())).encode()
