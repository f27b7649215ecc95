"""The hash chain of the event log: each event's hash covers its predecessor's, so any edit shows.

Writers lock the chain head row for the whole transaction (SQLite: BEGIN IMMEDIATE;
PostgreSQL and MariaDB: SELECT ... FOR UPDATE), so no two append after the same head.
A writer that decides from rows it reads (the request state machine, officer actions,
re-drives) takes the lock (`lock_head`) BEFORE reading them: rows read first, then a wait
for the lock, would be those from before the other writer committed (PostgreSQL's READ
COMMITTED reads each statement's own snapshot), and the decision stale.
Verification streams the events in position order (a server-side cursor: memory stays flat
however long the chain) from the start, or from a checkpoint (see `checkpoints`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from pipeline.ledger.tables import chain_head_table, chunks, events_table, utc

GENESIS_HASH = "0" * 64
HASHED_FIELDS = ("position", "request_id", "system", "kind", "attempt", "status", "payload",
                 "recorded_at", "dedupe_key")


# `json.dumps` with these arguments builds this encoder on every call (twice per event appended).
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str)


def canonical_json(value: Any) -> str:
    """The one JSON spelling of the ledger: hashes depend on it, so it never changes."""
    return _CANONICAL.encode(value)


def chain_hash(prev_hash: str, row: Mapping[Any, Any]) -> str:
    fields = {k: row[k] for k in HASHED_FIELDS}
    fields["recorded_at"] = utc(fields["recorded_at"]).isoformat()  # type: ignore[union-attr]
    return hashlib.sha256((prev_hash + canonical_json(fields)).encode("utf-8")).hexdigest()


VERIFY_BATCH_ROWS = 5000
_VERIFIED_COLUMNS = [events_table.c[name] for name in (*HASHED_FIELDS, "prev_hash", "hash")]


@dataclass(frozen=True)
class ChainWalk:
    """What a walk along the chain found: how many events it read, where it stopped, and the
    position of the first event that does not follow from its predecessor (None: all did)."""

    checked: int
    last_position: int
    last_hash: str
    broken_at: int | None


def event_intact(row: Mapping[Any, Any]) -> bool:
    """The event's hash is that of its content and its recorded predecessor hash."""
    return bool(chain_hash(row["prev_hash"], row) == row["hash"])


def walk(rows: Iterable[Mapping[Any, Any]], after_position: int = 0,
         after_hash: str = GENESIS_HASH) -> ChainWalk:
    """Follow the chain from the event at `after_position` (hash `after_hash`; 0: the start)."""
    prev, position, checked = after_hash, after_position, 0
    for row in rows:
        position += 1
        checked += 1
        if row["position"] != position or row["prev_hash"] != prev or chain_hash(prev, row) != row["hash"]:
            return ChainWalk(checked, position - 1, prev, position)
        prev = row["hash"]
    return ChainWalk(checked, position, prev, None)


def first_broken_link(rows: Iterable[Mapping[Any, Any]]) -> int | None:
    """The position of the first event that does not follow from its predecessor, or None."""
    return walk(rows).broken_at


def stream_events(conn: sa.Connection, after_position: int = 0,
                  up_to_position: int | None = None) -> Iterator[Mapping[Any, Any]]:
    """The events after `after_position` (up to `up_to_position`), in order, a batch at a time."""
    query = (sa.select(*_VERIFIED_COLUMNS).where(events_table.c.position > after_position)
             .order_by(events_table.c.position))
    if up_to_position is not None:
        query = query.where(events_table.c.position <= up_to_position)
    for row in conn.execution_options(yield_per=VERIFY_BATCH_ROWS).execute(query):
        yield row._mapping


def event_at(conn: sa.Connection, position: int) -> Mapping[Any, Any] | None:
    row = conn.execute(sa.select(*_VERIFIED_COLUMNS).where(events_table.c.position == position)).first()
    return None if row is None else row._mapping


class ChainWriter:
    """Appends events to the hash chain in memory; `write` inserts them in order.

    An event whose dedupe key is already known (recorded before, or earlier in this
    batch) is not appended: that is what makes every write idempotent.
    """

    def __init__(self, head: str, position: int, known_keys: set[str]) -> None:
        self.head = head
        self.position = position
        self.known = known_keys
        self.rows: list[dict[str, Any]] = []

    def append(self, request_id: str, system: str | None, kind: str, attempt: int | None,
               status: str | None, payload: dict[str, Any], now: datetime, dedupe_key: str) -> bool:
        if dedupe_key in self.known:
            return False
        row: dict[str, Any] = {"request_id": request_id, "system": system, "kind": kind,
                               "attempt": attempt, "status": status, "payload": canonical_json(payload),
                               "recorded_at": now, "dedupe_key": dedupe_key, "prev_hash": self.head}
        self.position += 1
        row["position"] = self.position
        row["hash"] = self.head = chain_hash(self.head, row)
        self.known.add(dedupe_key)
        self.rows.append(row)
        return True

    def write(self, conn: sa.Connection) -> None:
        if self.rows:
            conn.execute(events_table.insert(), self.rows)
            conn.execute(chain_head_table.update().where(chain_head_table.c.id == 1)
                         .values(last_hash=self.head, last_position=self.position))


def lock_head(conn: sa.Connection) -> sa.Row[Any]:
    """Lock the chain head for the rest of the transaction (again: a no-op); the head row."""
    query = sa.select(chain_head_table).where(chain_head_table.c.id == 1)
    if conn.dialect.name != "sqlite":  # SQLite writers hold the database's write lock from BEGIN
        query = query.with_for_update()
    return conn.execute(query).one()


def open_chain(conn: sa.Connection, dedupe_keys: Iterable[str] = ()) -> ChainWriter:
    """Lock the chain head; know which of these events are already recorded."""
    head = lock_head(conn)
    known: set[str] = set()
    for chunk in chunks(list(dedupe_keys)):
        known.update(conn.execute(sa.select(events_table.c.dedupe_key).where(
            events_table.c.dedupe_key.in_(chunk))).scalars())
    return ChainWriter(head.last_hash, head.last_position, known)
