"""The compacted-topic connector against the real broker: a tombstone per key of the subject."""

from __future__ import annotations

import uuid

import pytest
from kafka import KafkaProducer

from connectors.base import TaskContext
from connectors.stores.kafka_topic import KafkaTopicConnector, KafkaTopicSettings
from pipeline.devstack.broker import Broker
from pipeline.kafka_clients import ensure_topics
from schemas import Identity, SubjectIdentities
from tests.harness import read_topic

CONTEXT = TaskContext(request_id="7d5e3c1a-4b2f-4c8d-9e6f-0a1b2c3d4e5f", system="profiles", attempt=1)


@pytest.fixture
def topic(kafka: Broker) -> str:
    name = f"site.profiles.{uuid.uuid4().hex[:8]}"
    ensure_topics(kafka.bootstrap, [name], 3, configs={name: {"cleanup.policy": "compact"}})
    producer = KafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all", linger_ms=0)
    for version in (1, 2):
        for user in ("u1", "u2", "u3"):
            value = f'{{"v":{version},"user":"{user}"}}'.encode()
            producer.send(name, key=user.encode(), value=value).get(10)
    producer.close()
    return name


def latest(bootstrap: str, topic: str) -> dict[bytes, bytes | None]:
    values: dict[bytes, bytes | None] = {}
    for record in sorted(read_topic(bootstrap, topic, idle_s=1.0), key=lambda r: (r.partition, r.offset)):
        values[record.key] = record.value
    return values


def test_tombstone_for_the_subject_only_then_not_found(kafka: Broker, topic: str) -> None:
    store = KafkaTopicConnector("profiles", KafkaTopicSettings(
        bootstrap=kafka.bootstrap, topic=topic, key_template="{user_id}"))
    subject = SubjectIdentities(identities=[Identity(identity_type="user_id", identity_value="u2")])
    try:
        result = store.erase(subject, CONTEXT)
        assert result.status == "erased" and result.evidence and result.evidence.records_affected == 1
        values = latest(kafka.bootstrap, topic)
        assert values[b"u2"] is None
        assert values[b"u1"] == b'{"v":2,"user":"u1"}' and values[b"u3"] == b'{"v":2,"user":"u3"}'
        assert store.erase(subject, CONTEXT).status == "not_found"
        nobody = SubjectIdentities(identities=[Identity(identity_type="email", identity_value="x@y.z")])
        assert store.erase(nobody, CONTEXT).status == "not_found"
    finally:
        store.close()


@pytest.mark.kafka_requires("compaction")
def test_compaction_removes_the_old_values(kafka: Broker, topic: str) -> None:
    import time

    store = KafkaTopicConnector("profiles", KafkaTopicSettings(
        bootstrap=kafka.bootstrap, topic=topic, key_template="{user_id}"))
    store.erase(SubjectIdentities(identities=[Identity(identity_type="user_id", identity_value="u2")]),
                CONTEXT)
    store.close()
    time.sleep(60)
    assert not [r for r in read_topic(kafka.bootstrap, topic) if r.key == b"u2" and r.value is not None]


def test_missing_topic_is_a_permanent_error(kafka: Broker) -> None:
    from connectors.base import PermanentError

    store = KafkaTopicConnector("profiles", KafkaTopicSettings(
        bootstrap=kafka.bootstrap, topic=f"absent.{uuid.uuid4().hex[:6]}", key_template="{user_id}"))
    subject = SubjectIdentities(identities=[Identity(identity_type="user_id", identity_value="u2")])
    with pytest.raises(PermanentError, match="does not exist"):
        store.erase(subject, CONTEXT)
