"""The `Ledger`: one object for the rest of the pipeline, composed of the ledger's parts.

Every write is idempotent (see `dedupe`), so at-least-once delivery never records anything
twice. The schema is the migrations' business: `open_ledger` brings it to head first.
Data keys are stored wrapped by the `KeyWrapper` it is given (see `pipeline.keywrap`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from pipeline.keywrap import KeyWrapper
from pipeline.ledger import dedupe
from pipeline.ledger.chain import first_broken_link, stream_events
from pipeline.ledger.digests import IdentityDigests
from pipeline.ledger.engine import create_ledger_engine, exclusive
from pipeline.ledger.housekeeping import Housekeeping
from pipeline.ledger.keystore import KeyGrant, KeyStore
from pipeline.ledger.migrations import upgrade
from pipeline.ledger.state import RequestStateMachine
from pipeline.ledger.sweeps import SweepLog
from pipeline.ledger.views import PipelineFigures, RequestView, Views
from schemas import ErasureCompleted, ErasureOutcome, ErasurePlanned, ErasureTask


class Ledger:
    """A ledger whose schema is at head (see `open_ledger`).

    Without a `wrapper` (a ledger that never handles data keys: the desk's accounts, schema
    tests), every call that would store or read a data key raises `NoKekError`: no key is
    ever stored or returned in clear.
    """

    def __init__(self, url: str, wrapper: KeyWrapper | None = None) -> None:
        self.engine = create_ledger_engine(url)
        # Writers of the hash chain take the write lock when they begin, so no two read the same head.
        self.writer = exclusive(self.engine)
        self.is_postgres = self.engine.dialect.name == "postgresql"
        self.keys = KeyStore(self.engine, self.writer, wrapper)
        self.housekeeping = Housekeeping(self.engine, self.writer)
        self.views = Views(self.engine)
        self.digests = IdentityDigests(self.engine, self.writer)  # erase again after a restore
        self.sweeps = SweepLog(self.engine, self.writer)

    def close(self) -> None:
        self.engine.dispose()

    def record(self, events: Sequence[ErasurePlanned | ErasureOutcome], now: datetime,
               ) -> list[ErasureCompleted]:
        """Apply a batch in one transaction (a few statements per batch); return its completions."""
        with self.writer.begin() as conn:
            machine = RequestStateMachine.load(conn, {e.request_id for e in events}, now,
                                               [dedupe.of_event(e) for e in events])
            for event in events:
                machine.apply(event)
            completions = machine.complete_touched()
            machine.write(conn)
        return completions

    # -- key store -------------------------------------------------------------
    def grant_data_keys(self, proposals: dict[str, bytes], now: datetime) -> dict[str, KeyGrant]:
        return self.keys.grant(proposals, now)

    def mark_tasks_published(self, request_ids: Iterable[str], now: datetime) -> None:
        self.keys.mark_tasks_published(request_ids, now)

    def data_key(self, request_id: str) -> bytes | None:
        return self.keys.data_key(request_id)

    def destroy_data_keys(self, now: datetime, grace_s: float) -> int:
        return self.keys.destroy(now, grace_s)

    def rewrap_data_keys(self) -> int:
        """Wrap every live data key with the current KEK (legacy clear keys, older KEKs); how many."""
        return self.keys.rewrap()

    def record_identity_digests(self, rows: Sequence[dict[str, str]], now: datetime) -> int:
        """Keyed digests of a request's identities, per system whose backups are kept (`digests`)."""
        return self.digests.record(rows, now)

    # -- housekeeping ----------------------------------------------------------
    def forget_identity_digests(self, now: datetime) -> int:
        """Digests of people no backup of their systems can hold any more: deleted; how many."""
        return self.digests.forget_expired(now)

    def redrive_silent(self, now: datetime, max_tasks: int = 1000) -> list[ErasureTask]:
        return self.housekeeping.redrive_silent(now, max_tasks)

    def request_releases(self, now: datetime, max_tasks: int = 1000) -> list[ErasureTask]:
        return self.housekeeping.request_releases(now, max_tasks)

    def unpublished_completions(self, completed_before: datetime | None = None) -> list[ErasureCompleted]:
        return self.housekeeping.unpublished_completions(completed_before)

    def mark_completion_published(self, request_ids: Iterable[str]) -> None:
        self.housekeeping.mark_completion_published(request_ids)

    # -- queries ---------------------------------------------------------------
    def request(self, request_id: str, now: datetime) -> RequestView | None:
        return self.views.request(request_id, now)

    def list_requests(self, now: datetime, status: str | None = None, overdue: bool = False,
                      limit: int = 200, due_soon: bool = False, search: str | None = None,
                      channel: str | None = None) -> list[RequestView]:
        return self.views.list_requests(now, status, overdue, limit, due_soon, search, channel)

    def events(self, request_id: str | None = None) -> list[sa.Row[Any]]:
        return self.views.events(request_id)

    def active_holds(self, system: str | None = None) -> list[sa.Row[Any]]:
        return self.views.active_holds(system)

    def holds_of(self, request_id: str) -> list[sa.Row[Any]]:
        return self.views.holds_of(request_id)

    def chain_head(self) -> tuple[int, str]:
        return self.views.chain_head()

    def figures(self, now: datetime) -> PipelineFigures:
        """Requests by state, each system's lane, the oldest unfinished request, the nearest deadline,
        the chain's length: aggregate queries, read-only (what `/metrics` and `status --lanes` show)."""
        return self.views.figures(now)

    def ping(self) -> None:
        """Raises unless the ledger's database answers."""
        self.views.ping()

    def verify_chain(self) -> int | None:
        """The position of the first event that does not follow from its predecessor, or None."""
        with self.engine.connect() as conn:  # streamed: memory stays flat however long the chain
            return first_broken_link(stream_events(conn))


def open_ledger(url: str, wrapper: KeyWrapper | None = None) -> Ledger:
    """The ledger at `url`, its schema first brought to head; data keys wrapped by `wrapper`."""
    upgrade(url)
    return Ledger(url, wrapper)
