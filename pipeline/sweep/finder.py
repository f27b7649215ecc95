"""Find the rows a retention sweep covers in the site's own SQL store, read-only.

The query is built from the rule's checked identifiers with SQLAlchemy Core: every value (the
cutoff, the `where` filters) is a bound parameter, and the transaction is read-only where the
database can say so (PostgreSQL, MariaDB/MySQL, SQLite's `query_only`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import NoSuchTableError, OperationalError

from connectors.base import ConfigError
from pipeline.sweep.rules import RetentionSweep, parse_period
from schemas.identity import IdentityType

CHUNK_ROWS = 1_000  # rows read per query: what a sweep holds of the store at once


class SweepError(Exception):
    """A sweep cannot read its store as declared: the message names the system, rule and key."""


@dataclass(frozen=True)
class SweptRow:
    """One row the rule covers: the identity values it holds, and its clock's value (ISO)."""

    identities: dict[IdentityType, str]
    anchor: str


@contextmanager
def read_only(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A connection whose transaction cannot write, where the database offers that."""
    with engine.connect() as conn:
        dialect = conn.dialect.name
        if dialect == "sqlite":
            conn.exec_driver_sql("PRAGMA query_only = ON")
        elif dialect == "postgresql":
            conn.exec_driver_sql("SET TRANSACTION READ ONLY")
        elif dialect in ("mysql", "mariadb"):
            conn.exec_driver_sql("SET SESSION TRANSACTION READ ONLY")
        try:
            yield conn
        finally:
            conn.rollback()
            if dialect == "sqlite":
                conn.exec_driver_sql("PRAGMA query_only = OFF")


def _cutoff(column: sa.Column[Any], moment: datetime) -> datetime | date:
    """The cutoff as the column stores dates: aware for time-zone columns, naive UTC otherwise."""
    if isinstance(column.type, sa.Date) and not isinstance(column.type, sa.DateTime):
        return moment.date()
    if getattr(column.type, "timezone", False):
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)


def _anchor(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime | date) else str(value)


def _swept(rule: RetentionSweep, row: Sequence[Any]) -> SweptRow:
    """A row of (identity columns..., clock) as the identities it holds and its clock."""
    return SweptRow({kind: value for kind, value in zip(rule.identities, row[:-1], strict=True)
                     if isinstance(value, str) and value.strip()}, _anchor(row[-1]))


class SweepFinder:
    """Reads one system's store for its rules; `where` names the rule in error messages."""

    def __init__(self, system: str, url: str) -> None:
        self.system = system
        self.engine = sa.create_engine(url, pool_pre_ping=True)

    def close(self) -> None:
        self.engine.dispose()

    def chunks(self, rule: RetentionSweep, where: str, now: datetime,
               size: int = CHUNK_ROWS) -> Iterator[list[SweptRow]]:
        """The rows `rule` covers at `now`, `size` at a time, in primary key order.

        Keyset pagination over the primary key: each chunk is its own short read-only
        transaction, so a long sweep holds no snapshot or lock on the store while it submits (the
        pipeline deletes the very rows it reads). A table without a primary key is read through
        one server-side cursor instead.
        """
        try:
            with read_only(self.engine) as conn:
                table = self._table(rule, where, conn)
            query = self._query(table, rule, where, now)
            keys = list(table.primary_key.columns)
            if not keys:
                yield from self._streamed(query, rule, size)
                return
            last: tuple[Any, ...] | None = None
            while True:
                page = query.add_columns(*keys).order_by(*keys).limit(size)
                if last is not None:
                    after = keys[0] > last[0] if len(keys) == 1 else sa.tuple_(*keys) > sa.tuple_(*last)
                    page = page.where(after)
                with read_only(self.engine) as conn:
                    found = conn.execute(page).all()
                if not found:
                    return
                last = tuple(found[-1][-len(keys):])
                yield [_swept(rule, row[:-len(keys)]) for row in found]
                if len(found) < size:
                    return
        except OperationalError as exc:
            # Never the statement's text: its parameters may hold values from the store.
            raise SweepError(f"system {self.system!r}, {where}: the database did not answer "
                             f"({type(exc.orig).__name__})") from None

    def _streamed(self, query: sa.Select[Any], rule: RetentionSweep, size: int) -> Iterator[list[SweptRow]]:
        with read_only(self.engine) as conn:
            result = conn.execution_options(stream_results=True, yield_per=size).execute(query)
            for rows in result.partitions(size):
                yield [_swept(rule, row) for row in rows]

    def _table(self, rule: RetentionSweep, where: str, conn: sa.Connection) -> sa.Table:
        schema, _, name = rule.table.rpartition(".")
        try:
            return sa.Table(name, sa.MetaData(), schema=schema or None, autoload_with=conn)
        except NoSuchTableError:
            raise SweepError(f"system {self.system!r}, key {where}.table: no table {rule.table!r} "
                             "in the store") from None

    def _column(self, table: sa.Table, name: str, key: str) -> sa.Column[Any]:
        if name not in table.c:
            raise SweepError(f"system {self.system!r}, key {key}: table {table.name!r} has no column "
                             f"{name!r}")
        return table.c[name]

    def _query(self, table: sa.Table, rule: RetentionSweep, where: str, now: datetime) -> sa.Select[Any]:
        older = rule.older_than
        clock_column = self._column(table, older.column, f"{where}.older_than.column")
        cutoff = _cutoff(clock_column, now - parse_period(older.period))
        clock: Any = clock_column
        if older.fallback_column:
            clock = sa.func.coalesce(clock_column, self._column(
                table, older.fallback_column, f"{where}.older_than.fallback_column"))
        identities = [self._column(table, column, f"{where}.identities.{kind}")
                      for kind, column in rule.identities.items()]
        filters = [clock < cutoff]
        for name, value in rule.where.items():
            column = self._column(table, name, f"{where}.where.{name}")
            filters.append(column.is_(None) if value is None else column == value)
        return sa.select(*identities, clock.label("sweep_clock")).where(*filters)


def store_url(settings: Any, system: str) -> str:
    """The URL of a sql system's store, from its connector settings (the variable it names)."""
    from connectors.base import require_secret

    url: str | None = getattr(settings, "url", None)
    if url:
        return url
    try:
        return require_secret(str(getattr(settings, "url_env", "")), system)
    except ConfigError as exc:
        raise SweepError(str(exc)) from None
