"""Watching a running pipeline from outside: wait for a condition, read a topic from its start."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from kafka import TopicPartition

from pipeline.kafka_clients import reader


class WaitTimeout(AssertionError):
    """A wait ran out; an AssertionError so that a test waiting on the pipeline fails, not errors."""


def wait_until(check: Callable[[], Any], timeout_s: float, what: str, interval_s: float = 0.2) -> Any:
    """The first truthy value `check` returns; WaitTimeout naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise WaitTimeout(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(interval_s)


def read_topic(bootstrap: str, topic: str, idle_s: float = 1.5) -> list[Any]:
    """Every record of a topic, from the beginning, without joining a group."""
    consumer = reader(bootstrap)
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        assigned = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(assigned)
        consumer.seek_to_beginning(*assigned)
        records: list[Any] = []
        last_new = time.monotonic()
        while time.monotonic() - last_new < idle_s:
            batch = consumer.poll(timeout_ms=200)
            for items in batch.values():
                records.extend(items)
                last_new = time.monotonic()
        return records
    finally:
        consumer.close()
