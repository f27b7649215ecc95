"""Tasks waiting for their `not_before`: held in memory, released once due, earliest first.

The offset of a held task stays in flight, so it is not committed while it waits:
a restart re-delivers it and it is held again until due.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(order=True)
class _Entry(Generic[T]):
    due: datetime
    seq: int  # ties in arrival order; the items themselves are never compared
    item: T = field(compare=False)


class DelayQueue(Generic[T]):
    """A heap of items by due time. Used by the poll thread only: no lock."""

    def __init__(self) -> None:
        self._heap: list[_Entry[T]] = []
        self._seq = itertools.count()

    def push(self, due: datetime, item: T) -> None:
        heapq.heappush(self._heap, _Entry(due, next(self._seq), item))

    def pop_due(self, now: datetime) -> list[T]:
        """The items due at `now`, earliest first, removed from the queue."""
        due = []
        while self._heap and self._heap[0].due <= now:
            due.append(heapq.heappop(self._heap).item)
        return due

    def __len__(self) -> int:
        return len(self._heap)
