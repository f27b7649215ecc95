"""Which offsets a connector worker may commit: up to the lowest task still in flight.

Tasks finish out of order (a thread pool, delayed re-queues); committing past an
unfinished one would lose it on a crash. Committing only up to the lowest offset
still in flight means a crash re-delivers finished tasks, never loses unfinished ones.
"""

from __future__ import annotations

import threading

from kafka import TopicPartition
from kafka.structs import OffsetAndMetadata


class OffsetTracker:
    """Per partition: offsets in flight; the committable position is the lowest of them.

    Thread-safe: the poll thread starts and commits, pool threads mark tasks done.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._in_flight: dict[TopicPartition, set[int]] = {}
        self._next: dict[TopicPartition, int] = {}
        self._committed: dict[TopicPartition, int] = {}

    def started(self, tp: TopicPartition, offset: int) -> None:
        with self._lock:
            self._in_flight.setdefault(tp, set()).add(offset)
            self._next[tp] = max(self._next.get(tp, 0), offset + 1)

    def done(self, tp: TopicPartition, offset: int) -> None:
        with self._lock:
            self._in_flight.get(tp, set()).discard(offset)

    def forget(self, partitions: set[TopicPartition]) -> None:
        """Drop revoked partitions: their tasks in flight are another member's to redo."""
        with self._lock:
            for tp in partitions:
                self._in_flight.pop(tp, None)
                self._next.pop(tp, None)
                self._committed.pop(tp, None)

    def in_flight(self) -> int:
        with self._lock:
            return sum(len(v) for v in self._in_flight.values())

    def committable(self) -> dict[TopicPartition, OffsetAndMetadata]:
        """The positions that moved since the last commit."""
        with self._lock:
            positions = {}
            for tp, next_offset in self._next.items():
                pending = self._in_flight.get(tp)
                position = min(pending) if pending else next_offset
                if self._committed.get(tp) != position:
                    positions[tp] = OffsetAndMetadata(position, "", -1)
            return positions

    def committed(self, positions: dict[TopicPartition, OffsetAndMetadata]) -> None:
        with self._lock:
            for tp, meta in positions.items():
                if tp in self._next:
                    self._committed[tp] = meta.offset
