"""The worker's table recovery reads up to what a fetch can reach, not what ListOffsets claims.

Seen on the embedded broker restarted under a running pipeline: ListOffsets answered 9 for a
changelog partition whose fetches answered high watermark 0, and faust waited for offset 9
forever (the worker took no request for minutes, until it was killed by hand)."""

from __future__ import annotations

import uuid

from kafka import TopicPartition

from pipeline import kafka_clients
from pipeline.devstack.broker import Broker
from pipeline.streaming.readable_highwaters import checking


def test_a_claimed_watermark_past_the_readable_records_is_lowered_to_them(kafka: Broker) -> None:
    topic = f"highwaters.{uuid.uuid4().hex[:8]}"
    kafka_clients.ensure_topics(kafka.bootstrap, [topic], 2)
    producer = kafka_clients.producer(kafka.bootstrap, "highwaters-test")
    for number in range(5):
        producer.send(topic, key=b"k", value=str(number).encode(), partition=0).get(30)
    producer.close()
    written, empty = TopicPartition(topic, 0), TopicPartition(topic, 1)
    check = checking(lambda: kafka_clients.reader(kafka.bootstrap))

    assert check({written: 9, empty: 4}) == {written: 5, empty: 0}, "claims past the records are lowered"
    assert check({written: 5, empty: 0}) == {written: 5, empty: 0}, "true watermarks are kept"
    assert check({written: 3}) == {written: 3}, "a lower claim is never raised"
