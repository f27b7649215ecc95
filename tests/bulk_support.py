"""Shared by the bulk processor tests: people, batch items, and the calls a fake served."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

from connectors.base import BatchItem, TaskContext
from pipeline.devstack.fake_server import Exchange, FakeProcessor, observe_exchanges
from schemas import Identity, SubjectIdentities
from schemas.identity import IdentityType


def person(identity_type: IdentityType, *values: str) -> SubjectIdentities:
    return SubjectIdentities(identities=[Identity(identity_type=identity_type, identity_value=v)
                                         for v in values])


def email_only(email: str) -> SubjectIdentities:
    return person("email", email)


def item(system: str, subject: SubjectIdentities, job_ref: str | None = None, n: int = 0) -> BatchItem:
    return BatchItem(subject, TaskContext(request_id=f"00000000-0000-4000-8000-{n:012d}", system=system,
                                          attempt=1, job_ref=job_ref))


@contextmanager
def counted(fake: FakeProcessor) -> Iterator[Counter[str]]:
    """`METHOD /path` -> how many requests `fake` answered while the block ran (a job's own path
    counts under its collection: `GET /regulations/*`)."""
    calls: Counter[str] = Counter()

    def observe(served_by: FakeProcessor, exchange: Exchange) -> None:
        if served_by is fake:
            calls[f"{exchange.method} {urlsplit(exchange.target).path}"] += 1

    stop = observe_exchanges(observe)
    try:
        yield calls
    finally:
        stop()


def total(calls: Counter[str], prefix: str) -> int:
    return sum(count for route, count in calls.items() if route.startswith(prefix))
