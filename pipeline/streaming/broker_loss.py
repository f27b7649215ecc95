"""The stream worker after a broker lost its state: it leaves, for its supervisor to start it afresh.

faust's consumer offsets, its table and the table's changelog position all refer to logs the broker
no longer has. A worker that lives on through that was seen to stall in its table's recovery (faust
waiting, forever, for a changelog record the restarted embedded broker counts but does not serve),
and its orderly stop to hang on a group the broker forgot. So the worker leaves at once, like a
crash (every step of the pipeline is at-least-once and idempotent), after deleting the changelog
the broker made again since: it holds only what this dying worker wrote after the loss; the table
is working state (the ledger is the record), rebuilt empty by the next worker.

`RecoveryWatch` does the same for a worker whose table recovery makes no end (`RECOVERY_STALL_S`).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import NoReturn

from pipeline.streaming.topics import TopicKeeper

log = logging.getLogger(__name__)

# The exit code of a worker that leaves for this (EX_TEMPFAIL: start it again).
EXIT_BROKER_LOST = 75
RECOVERY_STALL_S = 180.0
WATCH_INTERVAL_S = 5.0


def leave_afresh(keeper: TopicKeeper, changelog: str, why: str) -> NoReturn:
    """Log why, delete `changelog`, and end the process now with `EXIT_BROKER_LOST`."""
    log.critical("%s: the stream worker leaves (exit code %d) for its supervisor to start it afresh; "
                 "its table's changelog %s is deleted (working state: the ledger is the record)",
                 why, EXIT_BROKER_LOST, changelog)
    keeper.delete(changelog)
    logging.shutdown()  # the lines above reach the log before the process ends
    os._exit(EXIT_BROKER_LOST)


class RecoveryWatch:
    """Leaves (see `leave_afresh`) when faust has been recovering its table for `stall_s` on end."""

    def __init__(self, in_recovery: Callable[[], bool], leave: Callable[[], object],
                 stall_s: float = RECOVERY_STALL_S, interval_s: float = WATCH_INTERVAL_S) -> None:
        self.in_recovery, self.leave = in_recovery, leave
        self.stall_s, self.interval_s = stall_s, interval_s
        self._since: float | None = None

    def start(self) -> None:
        threading.Thread(target=self._run, name="recovery-watch", daemon=True).start()

    def tick(self, now: float) -> bool:
        """One look; whether the recovery has been going on for `stall_s` (and `leave` was called)."""
        if not self.in_recovery():
            self._since = None
            return False
        self._since = self._since if self._since is not None else now
        if now - self._since < self.stall_s:
            return False
        self.leave()
        return True

    def _run(self) -> None:
        while not self.tick(time.monotonic()):
            time.sleep(self.interval_s)
