"""Encoding, decoding and dead-lettering of events: shared by router, aggregator and workers."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel, ValidationError

from schemas import DeadLetter


def now_utc() -> datetime:
    return datetime.now(UTC)


def encode(event: BaseModel) -> bytes:
    return event.model_dump_json(exclude_none=True).encode("utf-8")


def describe_invalid(exc: ValidationError, limit: int = 5) -> str:
    """Which fields are wrong and why, never the values (they may be personal data)."""
    parts = []
    for error in exc.errors(include_input=False, include_url=False)[:limit]:
        location = ".".join(str(p) for p in error["loc"]) or "(event)"
        parts.append(f"{location}: {error['msg']}")
    more = exc.error_count() - limit
    if more > 0:
        parts.append(f"... and {more} more")
    return f"invalid {exc.title}: " + "; ".join(parts)


def dead_letter(topic: str, partition: int, offset: int, reason: str, consumer: str) -> bytes:
    return encode(DeadLetter(
        source_topic=topic, partition=partition, offset=offset, reason=reason[:1000],
        consumer=consumer, dead_lettered_at=now_utc(),
    ))
