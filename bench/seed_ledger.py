"""Seed a ledger with many requests and their hash-chained events, for the scale benchmark.

    python bench/seed_ledger.py --url postgresql+psycopg://postgres@127.0.0.1:5432/ledger_scale \\
        --requests 1000000

Requests arrive evenly over two years up to `--end` (default: now); each is played through
the pipeline's own state machine (`bench/ledger_life.py`): 4-13 systems, every outcome the
aggregator records, legal holds, releases, re-drives, officers' confirmations and retries,
extensions, destroyed data keys; the recent ones still in progress, a few stuck and overdue.
The events are hashed by the ledger's own `ChainWriter`, in time order across requests, so
`erasure ledger verify` finds the seeded chain intact.

PostgreSQL is loaded with COPY, its secondary indexes dropped during the load and built after
it; SQLite and MariaDB with batched INSERTs (for small seeds: the tests). The database is
created when absent; a ledger that holds events already is refused unless `--replace`.
"""

from __future__ import annotations

import argparse
import heapq
import multiprocessing
import random
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout as well as from an installed package

from bench.ledger_life import ENTRY_FIELDS, Entry, Life, Simulator, live  # noqa: E402
from pipeline.ledger import upgrade  # noqa: E402
from pipeline.ledger.chain import GENESIS_HASH, chain_hash  # noqa: E402
from pipeline.ledger.tables import (  # noqa: E402
    chain_head_table,
    data_keys_table,
    events_table,
    holds_table,
    metadata,
    notes_table,
    notifications_table,
    requests_table,
    systems_table,
)
from pipeline.policy import load_policy  # noqa: E402

SPAN = timedelta(days=730)
CHUNK_REQUESTS = 2000
FLUSH_ROWS = 50_000
GRACE_S = 30 * 86400.0
REPEAT_SUBJECT = 0.03  # the same person asking again
BULK_TABLES = (requests_table, systems_table, events_table, holds_table, notifications_table,
               data_keys_table, notes_table)


def ensure_database(url: str) -> None:
    """Create the database `url` names when the server has none by that name."""
    parsed = sa.make_url(url)
    backend, name = parsed.get_backend_name(), parsed.database
    if backend not in ("postgresql", "mysql", "mariadb") or not name:
        return
    server = sa.create_engine(parsed.set(database="postgres" if backend == "postgresql" else None),
                              isolation_level="AUTOCOMMIT")
    try:
        with server.connect() as conn:
            if backend == "postgresql":
                if conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).first():
                    return
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
            else:
                conn.execute(sa.text(f"CREATE DATABASE IF NOT EXISTS `{name}`"))
    finally:
        server.dispose()


def prepare(url: str, replace: bool) -> sa.Engine:
    """The ledger at head and empty (after dropping every table with `replace`)."""
    ensure_database(url)
    engine = sa.create_engine(url)
    if replace:
        metadata.drop_all(engine)
        with engine.begin() as conn:
            conn.execute(sa.text("DROP TABLE IF EXISTS alembic_version"))
    upgrade(url)
    with engine.connect() as conn:
        events = conn.execute(sa.select(sa.func.count()).select_from(events_table)).scalar_one()
    if events:
        engine.dispose()
        raise SystemExit(f"the ledger at {parsed_safe(url)} holds {events} events already: pass --replace "
                         "to start over, or name another database")
    return engine


def parsed_safe(url: str) -> str:
    return sa.make_url(url).render_as_string(hide_password=True)


# -- generating requests (in worker processes) ---------------------------------------------------
@dataclass(frozen=True)
class ChunkSpec:
    url: str
    start: int
    count: int
    total: int
    seed: int
    end: datetime


@dataclass
class Chunk:
    """A chunk of requests played and written (all but their events): each request's arrival and
    chain entries, for the one process that hashes the chain in order."""

    chains: list[tuple[datetime, list[Entry]]]
    states: Counter[str]
    rows: Counter[str]


_ENGINES: dict[str, sa.Engine] = {}


def chunk_lives(spec: ChunkSpec) -> list[Life]:
    """Requests `start` to `start + count` of `total`, received evenly over two years up to `end`."""
    rng = random.Random(spec.seed * 1_000_003 + spec.start)
    sim = Simulator(rng, spec.end, load_policy(None)[0], GRACE_S)
    lives, recent = [], []
    for index in range(spec.start, spec.start + spec.count):
        received = spec.end - SPAN + SPAN * ((index + rng.random()) / spec.total)
        request_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        if recent and rng.random() < REPEAT_SUBJECT:
            subject_ref = rng.choice(recent)
        else:
            subject_ref = f"sr_{rng.getrandbits(128):032x}"
            recent = [*recent[-99:], subject_ref]
        lives.append(live(sim, request_id, received, subject_ref))
    return lives


def play_chunk(spec: ChunkSpec) -> Chunk:
    """Play a chunk of requests and write their rows, in the process that played them."""
    if spec.url not in _ENGINES:  # one engine per process (never inherited across a fork)
        _ENGINES[spec.url] = sa.create_engine(spec.url)
    writer, states = Writer(_ENGINES[spec.url]), Counter[str]()
    lives = chunk_lives(spec)
    for life in lives:
        states[life.request["status"]] += 1
        writer.add(requests_table, [life.request])
        writer.add(systems_table, life.systems)
        writer.add(holds_table, life.holds)
        writer.add(notifications_table, life.notifications)
        writer.add(data_keys_table, [life.data_key])
        writer.add(notes_table, life.notes)
    writer.close()
    return Chunk([(life.request["received_at"], life.chain) for life in lives], states, writer.written)


def played_chunks(url: str, total: int, seed: int, end: datetime, workers: int) -> Iterator[Chunk]:
    """The chunks in order of arrival; played in `workers` processes on PostgreSQL."""
    specs = [ChunkSpec(url, start, min(CHUNK_REQUESTS, total - start), total, seed, end)
             for start in range(0, total, CHUNK_REQUESTS)]
    if workers <= 1 or not url.startswith("postgresql"):  # SQLite and MariaDB seeds are the tests' small ones
        try:
            yield from map(play_chunk, specs)
        finally:
            if url in _ENGINES:
                _ENGINES.pop(url).dispose()
        return
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        yield from pool.imap(play_chunk, specs)


# -- writing ---------------------------------------------------------------------------------------
class Writer:
    """Buffers rows per table and writes them in bulk: COPY on PostgreSQL, batched INSERTs elsewhere."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.buffers: dict[str, list[dict[str, Any]]] = {t.name: [] for t in BULK_TABLES}
        self.written: Counter[str] = Counter()

    def add(self, table: sa.Table, rows: Sequence[dict[str, Any]]) -> None:
        self.buffers[table.name].extend(rows)
        if len(self.buffers[table.name]) >= FLUSH_ROWS:
            self.flush(table)

    def flush(self, table: sa.Table) -> None:
        rows, self.buffers[table.name] = self.buffers[table.name], []
        if not rows:
            return
        columns = [c.name for c in table.columns if not (table is events_table and c.name == "id")]
        if self.engine.dialect.name == "postgresql":
            raw = self.engine.raw_connection()
            try:
                with raw.cursor() as cursor, cursor.copy(  # type: ignore[attr-defined]
                        f"COPY {table.name} ({', '.join(columns)}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row([row.get(c) for c in columns])
                raw.commit()
            finally:
                raw.close()
        else:
            with self.engine.begin() as conn:
                conn.execute(table.insert(), [{c: row.get(c) for c in columns} for row in rows])
        self.written[table.name] += len(rows)

    def close(self) -> None:
        for table in BULK_TABLES:
            self.flush(table)


class Chain:
    """The seeded chain: every request's entries, linked in time order with the ledger's `chain_hash`
    (what `ChainWriter.append` does, the payload being in canonical JSON already)."""

    def __init__(self, writer: Writer) -> None:
        self.writer, self.seq = writer, 0
        self.pending: list[tuple[datetime, int, Entry]] = []  # (recorded_at, arrival, entry)
        self.head, self.position = GENESIS_HASH, 0
        self.rows: list[dict[str, Any]] = []

    def add(self, entries: Sequence[Entry]) -> None:
        for entry in entries:
            self.seq += 1
            heapq.heappush(self.pending, (entry[0], self.seq, entry))

    def emit_until(self, moment: datetime | None) -> None:
        """Link and write every entry recorded up to `moment` (None: all)."""
        while self.pending and (moment is None or self.pending[0][0] <= moment):
            row = dict(zip(ENTRY_FIELDS, heapq.heappop(self.pending)[2], strict=True))
            self.position += 1
            row.update(position=self.position, prev_hash=self.head)
            row["hash"] = self.head = chain_hash(self.head, row)
            self.rows.append(row)
            if len(self.rows) >= FLUSH_ROWS:
                self._flush()
        if moment is None:
            self._flush()

    def _flush(self) -> None:
        self.writer.add(events_table, self.rows)
        self.writer.flush(events_table)
        self.rows = []


# -- PostgreSQL: indexes built once, after the load ------------------------------------------------
def drop_secondary_indexes(engine: sa.Engine) -> list[tuple[str, str, list[str]]]:
    """Drop the bulk tables' indexes and unique constraints (not primary keys); what to rebuild."""
    dropped: list[tuple[str, str, list[str]]] = []
    with engine.begin() as conn:
        inspector = sa.inspect(conn)
        for table in BULK_TABLES:
            for unique in inspector.get_unique_constraints(table.name):
                conn.execute(sa.text(f'ALTER TABLE {table.name} DROP CONSTRAINT "{unique["name"]}"'))
                dropped.append(("unique", table.name, list(unique["column_names"])))
            for index in inspector.get_indexes(table.name):
                conn.execute(sa.text(f'DROP INDEX "{index["name"]}"'))
                dropped.append((str(index["name"]), table.name, [str(c) for c in index["column_names"]]))
    return dropped


def rebuild_indexes(engine: sa.Engine, dropped: list[tuple[str, str, list[str]]],
                    unique_names: dict[tuple[str, tuple[str, ...]], str]) -> None:
    with engine.connect() as conn:
        conn.execute(sa.text("SET maintenance_work_mem = '512MB'"))
        for name, table, columns in dropped:
            if name == "unique":
                constraint = unique_names[(table, tuple(columns))]
                conn.execute(sa.text(f'ALTER TABLE {table} ADD CONSTRAINT "{constraint}" '
                                     f'UNIQUE ({", ".join(columns)})'))
            else:
                conn.execute(sa.text(f'CREATE INDEX "{name}" ON {table} ({", ".join(columns)})'))
            conn.commit()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for table in (*BULK_TABLES, chain_head_table):
            conn.execute(sa.text(f"VACUUM ANALYZE {table.name}"))  # visibility map: index-only scans


def unique_constraint_names(engine: sa.Engine) -> dict[tuple[str, tuple[str, ...]], str]:
    with engine.connect() as conn:
        inspector = sa.inspect(conn)
        return {(t.name, tuple(u["column_names"])): str(u["name"])
                for t in BULK_TABLES for u in inspector.get_unique_constraints(t.name)}


# -- the seed ----------------------------------------------------------------------------------------
def seed(url: str, total: int, seed_value: int, end: datetime, workers: int, replace: bool,
         report: bool = True) -> dict[str, Any]:
    started = time.perf_counter()
    engine = prepare(url, replace)
    postgres = engine.dialect.name == "postgresql"
    unique_names = unique_constraint_names(engine) if postgres else {}
    dropped = drop_secondary_indexes(engine) if postgres else []
    writer, states, rows = Writer(engine), Counter[str](), Counter[str]()
    chain, count = Chain(writer), 0
    for chunk in played_chunks(url, total, seed_value, end, workers):
        for received, entries in chunk.chains:
            chain.emit_until(received)
            chain.add(entries)
        states.update(chunk.states)
        rows.update(chunk.rows)
        count += len(chunk.chains)
        if report and count % 100_000 < CHUNK_REQUESTS:
            print(f"  {count} requests, {chain.position} events, "
                  f"{time.perf_counter() - started:.0f} s", flush=True)
    chain.emit_until(None)
    writer.close()
    with engine.begin() as conn:
        conn.execute(chain_head_table.update().where(chain_head_table.c.id == 1).values(
            last_hash=chain.head, last_position=chain.position))
    loaded = time.perf_counter() - started
    if postgres:
        rebuild_indexes(engine, dropped, unique_names)
    engine.dispose()
    rows.update(writer.written)
    return {"requests": total, "events": chain.position, "rows": dict(rows),
            "states": dict(states), "load_s": round(loaded, 1),
            "seed_s": round(time.perf_counter() - started, 1)}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="the ledger's SQLAlchemy URL (its database is created)")
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7, help="the same seed gives the same ledger")
    parser.add_argument("--end", help="ISO 8601 instant the two years end at (default: now)")
    parser.add_argument("--workers", type=int, default=min(2, multiprocessing.cpu_count()),
                        help="processes playing requests (the chain is hashed in this one)")
    parser.add_argument("--replace", action="store_true", help="drop an existing ledger there first")
    args = parser.parse_args(argv)
    if args.requests < 1:
        parser.error("--requests must be at least 1")
    end = datetime.fromisoformat(args.end) if args.end else datetime.now(UTC)
    if end.tzinfo is None:
        parser.error("--end needs a time zone, e.g. 2026-12-01T00:00:00+00:00")
    figures = seed(args.url, args.requests, args.seed, end, args.workers, args.replace)
    print(f"seeded {figures['requests']} requests and {figures['events']} events in {figures['seed_s']} s "
          f"(loading {figures['load_s']} s, indexes and ANALYZE the rest)")
    print("  states: " + ", ".join(f"{k} {v}" for k, v in sorted(figures["states"].items())))
    print("  rows: " + ", ".join(f"{k} {v}" for k, v in sorted(figures["rows"].items())))


if __name__ == "__main__":
    main()
