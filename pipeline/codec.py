"""The pipeline's side of the codec: the clock and dead letters; events are encoded by `schemas.codec`."""

from __future__ import annotations

from datetime import UTC, datetime

from schemas import DeadLetter
from schemas.codec import decode, describe_invalid, encode

__all__ = ["dead_letter", "decode", "describe_invalid", "encode", "now_utc"]


def now_utc() -> datetime:
    return datetime.now(UTC)


def dead_letter(topic: str, partition: int, offset: int, reason: str, consumer: str) -> bytes:
    return encode(DeadLetter(
        source_topic=topic, partition=partition, offset=offset, reason=reason[:1000],
        consumer=consumer, dead_lettered_at=now_utc(),
    ))
