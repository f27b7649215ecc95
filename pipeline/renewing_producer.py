"""A Kafka producer that outlives a broker which lost its state.

An idempotent kafka-python producer holds a producer id the broker gave it. A broker that comes
back without its storage (the embedded Tansu on `memory://`, killed and restarted) no longer
knows that id: the next send fails with `UnknownProducerIdError`, kafka-python asks for a new
epoch, the broker refuses (Tansu answers `UnknownError`) and the producer turns fatal: every
later send fails at once, forever, while its process lives on. Or it takes the refusal for a
retention gap (KAFKA-5793: the log starts after its last acknowledged record) and retries the
same unknown id until its delivery timeout. `RenewingProducer` replaces the producer after any
failed send with a fresh one (a new producer id; a broker that is only away gets a new
connection, which costs nothing) and `deliver` sends again until the broker acknowledges, so a
process lives through a broker restart.

Sending again is safe: every consumer of the pipeline is idempotent on the record's key and
content (at-least-once everywhere).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from kafka import KafkaProducer
from kafka.errors import (
    IllegalStateError,
    InvalidProducerEpochError,
    KafkaError,
    OutOfOrderSequenceNumberError,
    UnknownProducerIdError,
)

log = logging.getLogger(__name__)

# What a broker that forgot this producer answers (its id, epoch or sequence are unknown to it).
LOST_STATE_ERRORS = (UnknownProducerIdError, OutOfOrderSequenceNumberError, InvalidProducerEpochError,
                     IllegalStateError)
RETRY_PAUSE_S = 0.5
# One attempt waits this long for the acknowledgement: a producer stuck on an id the broker forgot
# (kafka-python retries a "retention-based" UnknownProducerId until its delivery timeout) is replaced.
ATTEMPT_TIMEOUT_S = 5.0

# topic, key, value, headers
Record = tuple[str, bytes | None, bytes | None, Sequence[tuple[str, bytes]] | None]


def failure_name(producer: Any, error: BaseException) -> str:
    """What made a send fail, for the logs: the error, and whether the producer is now fatal."""
    manager = getattr(producer, "_transaction_manager", None)  # kafka-python keeps its fatal state here
    fatal = manager is not None and manager.has_fatal_error()
    lost = fatal or isinstance(error, LOST_STATE_ERRORS)
    return (type(error).__name__ + (", fatal" if fatal else "")
            + (": the broker lost its state" if lost else ""))


class RenewingProducer:
    """One producer at a time, replaced when a failed send leaves it unusable. Thread-safe."""

    def __init__(self, build: Callable[[], KafkaProducer], name: str) -> None:
        self._build = build
        self.name = name
        self._lock = threading.Lock()
        self._current: KafkaProducer = build()
        self.renewals = 0

    @property
    def current(self) -> KafkaProducer:
        return self._current

    def send(self, topic: str, value: bytes | None = None, key: bytes | None = None,
             headers: Sequence[tuple[str, bytes]] | None = None) -> Any:
        return self._current.send(topic, value=value, key=key,
                                  headers=list(headers) if headers is not None else None)

    def renew(self, used: KafkaProducer, error: BaseException) -> None:
        """Replace `used`, the producer a send failed on (unless another thread did already)."""
        with self._lock:
            if self._current is not used:
                return
            log.warning("%s: a send failed (%s); replacing the producer", self.name,
                        failure_name(used, error))
            self._current = self._build()
            self.renewals += 1
        _close_quietly(used)

    def deliver(self, records: Sequence[Record], timeout_s: float,
                stopping: Callable[[], bool] = lambda: False) -> None:
        """Send every record and wait until the broker has them all, sending again (on a fresh
        producer when needed) until `timeout_s` runs out or `stopping()`; then the last error."""
        deadline = time.monotonic() + timeout_s
        while True:
            used = self._current
            try:
                futures = [used.send(topic, value=value, key=key,
                                     headers=list(headers) if headers is not None else None)
                           for topic, key, value, headers in records]
                for future in futures:
                    future.get(max(0.1, min(ATTEMPT_TIMEOUT_S, deadline - time.monotonic())))
                return
            except KafkaError as exc:
                self.renew(used, exc)
                if time.monotonic() + RETRY_PAUSE_S >= deadline or stopping():
                    raise
                log.warning("%s: %d record(s) not acknowledged (%s); sending again", self.name,
                            len(records), type(exc).__name__)
                time.sleep(RETRY_PAUSE_S)

    def flush(self, timeout_s: float | None = None) -> None:
        self._current.flush(timeout_s)

    def close(self, timeout_s: float | None = None) -> None:
        self._current.close(timeout_s)


def _close_quietly(producer: KafkaProducer) -> None:
    """Close a producer that can no longer send, without waiting for what it will never deliver."""
    try:
        producer.close(0)
    except Exception as exc:  # it is being discarded; its failure changes nothing
        log.debug("closing a discarded producer failed: %s", type(exc).__name__)
