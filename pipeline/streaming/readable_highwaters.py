"""The changelog's high watermarks as a fetch sees them, not as ListOffsets claims them.

faust restores its tables by reading each changelog partition up to the high watermark it
asked for with ListOffsets, and waits for that offset however long it takes. The embedded
broker (Tansu 0.6.0, memory storage, restarted under a running pipeline) can answer
ListOffsets with an offset its fetches never reach (seen: `latest` 9 while every fetch answers
high watermark 0 with no records), and the worker then recovered forever, taking no request.
So each claimed watermark is checked with one fetch per partition and the lower one is used:
on Apache Kafka both agree and nothing changes; on such a broker the worker recovers what can
be read and goes on (the table is working state; the ledger is the record).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from kafka import TopicPartition

FETCH_TIMEOUT_MS = 2_000


def readable_highwaters(reader: Any, claimed: Mapping[Any, int],
                        timeout_ms: int = FETCH_TIMEOUT_MS) -> dict[Any, int]:
    """For each partition (faust's TP or kafka-python's TopicPartition, keyed as given), the lower of
    the claimed high watermark and the one a fetch reports; the claimed one where no fetch answered."""
    wanted = {TopicPartition(tp.topic, tp.partition): tp for tp in claimed if claimed[tp] > 0}
    if not wanted:
        return dict(claimed)
    reader.assign(list(wanted))
    for partition, tp in wanted.items():
        reader.seek(partition, claimed[tp] - 1)  # the last record it claims: one fetch answers
    reader.poll(timeout_ms=timeout_ms, max_records=1)
    checked = dict(claimed)
    for partition, tp in wanted.items():
        fetched = reader.highwater(partition)
        if fetched is not None:
            checked[tp] = min(claimed[tp], fetched)
    return checked


def checking(reader_factory: Callable[[], Any]) -> Callable[[Mapping[Any, int]], dict[Any, int]]:
    """`readable_highwaters` with a reader made for the call and closed after it."""
    def check(claimed: Mapping[Any, int]) -> dict[Any, int]:
        reader = reader_factory()
        try:
            return readable_highwaters(reader, claimed)
        finally:
            reader.close()
    return check
