"""Offsets are committed only up to the lowest task still in flight; revoked partitions are forgotten."""

from __future__ import annotations

from kafka import TopicPartition
from kafka.structs import OffsetAndMetadata

from pipeline.worker.offsets import OffsetTracker

TP = TopicPartition("erasure.tasks.crm.v1", 0)
OTHER = TopicPartition("erasure.tasks.crm.v1", 1)


def positions(tracker: OffsetTracker) -> dict[TopicPartition, int]:
    return {tp: meta.offset for tp, meta in tracker.committable().items()}


def commit(tracker: OffsetTracker) -> dict[TopicPartition, int]:
    found = tracker.committable()
    tracker.committed(found)
    return {tp: meta.offset for tp, meta in found.items()}


def test_position_is_the_lowest_offset_in_flight() -> None:
    tracker = OffsetTracker()
    for offset in (5, 6, 7):
        tracker.started(TP, offset)
    assert positions(tracker) == {TP: 5}
    tracker.done(TP, 5)
    assert positions(tracker) == {TP: 6}
    assert tracker.in_flight() == 2


def test_nothing_in_flight_commits_past_the_last_offset_seen() -> None:
    tracker = OffsetTracker()
    tracker.started(TP, 3)
    tracker.done(TP, 3)
    assert positions(tracker) == {TP: 4}


def test_out_of_order_completion_waits_for_the_slowest_task() -> None:
    tracker = OffsetTracker()
    for offset in range(4):
        tracker.started(TP, offset)
    for offset in (3, 2, 1):
        tracker.done(TP, offset)
    assert positions(tracker) == {TP: 0}  # offset 0 still running: 1..3 are redone after a crash
    tracker.done(TP, 0)
    assert positions(tracker) == {TP: 4}


def test_a_position_is_committed_once() -> None:
    tracker = OffsetTracker()
    tracker.started(TP, 0)
    tracker.started(TP, 1)
    tracker.done(TP, 0)
    assert commit(tracker) == {TP: 1}
    assert commit(tracker) == {}
    tracker.done(TP, 1)
    assert commit(tracker) == {TP: 2}


def test_partitions_are_tracked_apart() -> None:
    tracker = OffsetTracker()
    tracker.started(TP, 10)
    tracker.started(OTHER, 20)
    tracker.done(OTHER, 20)
    assert positions(tracker) == {TP: 10, OTHER: 21}


def test_revoked_partitions_are_forgotten() -> None:
    tracker = OffsetTracker()
    tracker.started(TP, 10)
    tracker.started(OTHER, 20)
    tracker.forget({TP})
    assert positions(tracker) == {OTHER: 20}
    assert tracker.in_flight() == 1
    tracker.done(TP, 10)  # a task of the revoked partition finishing late changes nothing
    tracker.committed({TP: OffsetAndMetadata(11, "", -1)})
    assert positions(tracker) == {OTHER: 20}


def test_a_partition_assigned_again_starts_afresh() -> None:
    tracker = OffsetTracker()
    tracker.started(TP, 10)
    commit(tracker)
    tracker.forget({TP})
    tracker.started(TP, 10)  # redelivered to this member after a rebalance
    assert commit(tracker) == {TP: 10}
