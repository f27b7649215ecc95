"""Broker loss, piece by piece, against a real embedded broker killed (SIGKILL) and restarted empty on the
same port: a publisher's producer is replaced and its request goes through; the topic keeper tells
which topics were lost and makes them again as configured; `revive` brings a dead broker back with its
topics; and the key store routes again a request whose plan the broker lost."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pipeline import kafka_clients
from pipeline.crypto import init_keys, load_keys
from pipeline.deadlines import due_at
from pipeline.devstack.broker import Broker, revive, start_tansu
from pipeline.devstack.probes import read_topic
from pipeline.intake import IntakeClient
from pipeline.keywrap import AesGcmKeyWrapper
from pipeline.ledger import open_ledger
from pipeline.ledger.keystore import LOST_PLAN_AFTER
from pipeline.signing import INTAKE
from pipeline.streaming import topics
from schemas import ErasurePlanned, PlannedTarget, SealedIdentities
from tests.fakes.signers import TestSigners

LEADER = "erasure-pipeline-__assignor-__leader"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    started = start_tansu(tmp_path / "broker")
    yield started
    started.stop()


def partitions(bootstrap: str) -> dict[str, tuple[int, str | None]]:
    """Each topic's partition count and id."""
    admin = kafka_clients.admin(bootstrap)
    try:
        return {t["name"]: (len(t["partitions"]), t.get("topic_id")) for t in admin.describe_topics()}
    finally:
        admin.close()


def test_a_publisher_lives_through_a_broker_restart(broker: Broker, tmp_path: Path) -> None:
    init_keys(tmp_path / "keys")
    with IntakeClient(broker.bootstrap, load_keys(tmp_path / "keys").intake_public,
                      TestSigners().signer(INTAKE)) as client:
        before = client.submit({"email": "avant.panne@example.test"}, datetime.now(UTC))
        broker.kill()
        broker.restart()  # it forgot the producer id: kafka-python's producer turns fatal
        after = client.submit({"email": "apres.panne@example.test"}, datetime.now(UTC))
        assert client.producer.renewals >= 1
    keys = [record.key.decode() for record in read_topic(broker.bootstrap, topics.REQUESTS)]
    assert keys == [after], f"the broker kept only what came after its restart, not {before}"


def test_a_lane_reads_the_log_a_restarted_broker_made_again_from_its_beginning(broker: Broker) -> None:
    """A lane's sole owner had read ten records per partition; the broker comes back empty and the
    topic is made again. Tansu answers a fetch past the new log's end with nothing, so the lane must
    notice the new topic id and read the new log from its start, not wait for it to pass offset 10."""
    topic = "erasure.tasks.lost-log.v1"
    kafka_clients.ensure_topics(broker.bootstrap, [topic], 2)

    def produce(count: int) -> None:
        producer = kafka_clients.producer(broker.bootstrap, "test-lost-log")
        for index in range(count):
            producer.send(topic, f"record {index}".encode(), partition=index % 2)
        producer.flush()
        producer.close()

    def drain(consumer: kafka_clients.LaneConsumer, within_s: float, wanted: int) -> list[bytes]:
        values: list[bytes] = []
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline and len(values) < wanted:
            batches = consumer.poll(timeout_ms=200)
            recreated = consumer.recreated_partitions()
            values += [r.value for tp, records in batches.items() if tp not in recreated for r in records]
        return values

    produce(20)
    consumer = kafka_clients.group_consumer(broker.bootstrap, "erasure-connector-lost-log", "test-lost-log",
                                            6.0, 2.0, sole_owner=True)
    try:
        consumer.subscribe([topic])
        assert len(drain(consumer, 30, 20)) == 20
        assert consumer.recreated_partitions() == set(), "the same topic: nothing to read again"
        broker.kill()
        broker.restart()
        kafka_clients.ensure_topics(broker.bootstrap, [topic], 2)
        produce(4)
        assert sorted(drain(consumer, 30, 4)) == [b"record 0", b"record 1", b"record 2", b"record 3"]
    finally:
        consumer.close()


def test_the_keeper_makes_lost_topics_again_as_configured(broker: Broker) -> None:
    wanted = topics.all_topics(["brevo"])
    keeper = topics.TopicKeeper(broker.bootstrap, wanted, 3, configs=topics.topic_configs(3600),
                                single_partition=(LEADER,))
    first = keeper.check()
    assert sorted(first.created) == sorted([*wanted, LEADER]) and first.lost == []
    assert keeper.check() == topics.TopicCheck([], [])
    broker.kill()
    broker.restart()
    # A client's produce makes one topic again before the keeper looks: Tansu's defaults, another id.
    producer = kafka_clients.producer(broker.bootstrap, "early-bird")
    producer.send(topics.OUTCOMES, key=b"k", value=b"v").get(10)
    producer.close()
    again = keeper.check()
    assert sorted(again.lost) == sorted([*wanted, LEADER]), "gone, or made again by someone else"
    assert topics.OUTCOMES not in again.created and len(again.created) == len(wanted)
    counts = {name: count for name, (count, _) in partitions(broker.bootstrap).items()}
    assert counts[topics.REQUESTS] == 3 and counts[LEADER] == 1
    assert keeper.check() == topics.TopicCheck([], [])
    keeper.close()


def test_revive_restarts_a_dead_broker_on_its_port_with_the_topics(broker: Broker) -> None:
    made: list[str] = []

    def create(bootstrap: str) -> None:
        made.append(bootstrap)
        kafka_clients.ensure_topics(bootstrap, topics.all_topics(["brevo"]), 4)

    assert not revive(broker, create), "alive: nothing to do"
    broker.kill()
    assert not broker.alive()
    assert revive(broker, create) and broker.alive()
    assert made == [broker.bootstrap]
    assert set(topics.all_topics(["brevo"])) <= set(partitions(broker.bootstrap))


def test_a_request_whose_plan_the_broker_lost_is_routed_again(tmp_path: Path) -> None:
    ledger = open_ledger(f"sqlite:///{tmp_path / 'ledger.db'}", AesGcmKeyWrapper.generate())
    lost, kept = str(uuid.uuid4()), str(uuid.uuid4())
    t0 = datetime.now(UTC)
    ledger.grant_data_keys({lost: b"l" * 32, kept: b"k" * 32}, t0)
    ledger.mark_tasks_published([lost, kept], t0)  # the router published both plans and their tasks
    sealed = SealedIdentities(alg="secretbox-xsalsa20poly1305", key_id=kept, ciphertext="c2VjcmV0")
    ledger.record([ErasurePlanned(request_id=kept, received_at=t0, due_at=due_at(t0), subject_ref="sr_k",
                                  identities=sealed, planned_at=t0,
                                  targets=[PlannedTarget(system="brevo", expected_turnaround_s=60)])], t0)
    soon = ledger.grant_data_keys({lost: b"x" * 32, kept: b"x" * 32}, t0 + timedelta(seconds=5))
    assert soon[lost].tasks_published and soon[kept].tasks_published  # the plan may still be on its way
    later = ledger.grant_data_keys({lost: b"x" * 32, kept: b"x" * 32},
                                   t0 + LOST_PLAN_AFTER + timedelta(seconds=1))
    assert not later[lost].tasks_published, "never recorded: the broker lost it, the router plans it again"
    assert later[kept].tasks_published, "recorded: a duplicate"
    assert later[lost].data_key == b"l" * 32, "with the same data key"
    ledger.close()
