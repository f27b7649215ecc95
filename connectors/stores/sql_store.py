"""An internal SQL store (PostgreSQL, MariaDB, SQLite) erased by rules declared per table.

Each rule deletes the subject's rows, anonymises named columns, or holds rows a
retention rule covers: marked with `retain_until` in place, or moved into the
store's restricted archive table. Rules run in the order declared (declare
children before parents so foreign keys hold), all in one transaction per request.
When a hold ends, a release task deletes the held rows of that category whose own
`retain_until` has passed, and only those: the store checks the date itself, whatever the task
says (a forged or early release deletes nothing). Rows still under hold are reported back as a
`held` result naming each category and its end, so the ledger knows the hold is still in force.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, NoSuchTableError, OperationalError

from connectors.base import (
    BatchItem,
    ConnectorError,
    EraseResult,
    PermanentError,
    RetryableError,
    TaskContext,
    require_secret,
)
from connectors.stores.sql_rules import IdentityTypeName, SqlStoreSettings, TableRule, Via
from schemas import Evidence, Hold, SubjectIdentities

__all__ = ["ARCHIVE_TABLE", "SqlStoreConnector", "SqlStoreSettings", "TableRule", "Via"]
ARCHIVE_TABLE = "erasure_restricted_archive"
log = logging.getLogger(__name__)


archive_metadata = sa.MetaData()
archive_table = sa.Table(
    ARCHIVE_TABLE, archive_metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("request_id", sa.String(36), nullable=False, index=True),
    sa.Column("source_table", sa.String(128), nullable=False),
    sa.Column("data_category", sa.String(64), nullable=False),
    sa.Column("retain_until", sa.DateTime(timezone=True), nullable=False),
    sa.Column("archived_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("row_data", sa.Text, nullable=False),
)


class SqlStoreConnector:
    # The runtime hands at most this many tasks to `erase_batch` at once.
    max_batch = 100

    def __init__(self, system: str, settings: SqlStoreSettings,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.system = system
        self.settings = settings
        self.clock = clock
        url = settings.url or require_secret(settings.url_env or "", system)
        self._engine = sa.create_engine(url, pool_pre_ping=True)
        if self._engine.dialect.name == "sqlite":
            # SQLite ignores foreign keys unless asked: a rule order that would orphan rows must fail.
            sa.event.listen(self._engine, "connect", _sqlite_foreign_keys)
        self._metadata = sa.MetaData()
        self._tables: dict[str, sa.Table] = {}
        # Reflection registers the Table before its columns are loaded: a second thread could
        # see a table without columns. One lock, taken only until every table is known.
        self._reflect_lock = threading.Lock()
        self._archive_ready = not any(r.action == "hold" and r.hold_mode == "archive"
                                      for r in settings.tables)

    def _table(self, name: str, connection: sa.Connection) -> sa.Table:
        table = self._tables.get(name)
        if table is not None:
            return table
        with self._reflect_lock:
            if name not in self._tables:
                try:
                    self._tables[name] = sa.Table(name, self._metadata, autoload_with=connection)
                except NoSuchTableError as exc:
                    raise PermanentError(self.system, f"table {name!r} does not exist") from exc
            return self._tables[name]

    def _column(self, table: sa.Table, rule: TableRule, name: str) -> sa.Column[Any]:
        if name not in table.c:
            raise PermanentError(self.system, f"table {rule.table!r} has no column {name!r}")
        return table.c[name]

    def _condition(self, table: sa.Table, rule: TableRule, subject: SubjectIdentities,
                   connection: sa.Connection) -> Any:
        if rule.via is not None:
            parent = self._table(rule.via.table, connection)
            parent_rule = TableRule(table=rule.via.table, match=rule.via.match, action="delete")
            parent_condition = self._identity_condition(parent, parent_rule, subject)
            if parent_condition is None:
                return None
            keys = sa.select(self._column(parent, parent_rule, rule.via.key)).where(parent_condition)
            return self._column(table, rule, rule.via.column).in_(keys)
        return self._identity_condition(table, rule, subject)

    def _identity_condition(self, table: sa.Table, rule: TableRule, subject: SubjectIdentities) -> Any:
        values: dict[IdentityTypeName, list[str]] = {}
        for identity in subject.identities:
            values.setdefault(identity.identity_type, []).append(identity.identity_value.strip())
        return self._values_condition(table, rule, values)

    def _values_condition(self, table: sa.Table, rule: TableRule,
                          values: Mapping[IdentityTypeName, list[str]]) -> Any:
        """Rows holding any of these values in the rule's match columns (e-mail case-insensitively)."""
        clauses = []
        for identity_type, column_name in rule.match.items():
            column = self._column(table, rule, column_name)
            wanted = values.get(identity_type)
            if not wanted:
                continue
            if identity_type == "email":
                clauses.append(sa.func.lower(column).in_([v.lower() for v in wanted]))
            else:
                clauses.append(column.in_(wanted))
        return sa.or_(*clauses) if clauses else None

    def _ensure_archive(self) -> None:
        if not self._archive_ready:
            with self._reflect_lock:
                archive_metadata.create_all(self._engine, tables=[archive_table])
                self._archive_ready = True

    def erase(self, subject: SubjectIdentities, context: TaskContext) -> EraseResult:
        try:
            self._ensure_archive()
            with self._engine.begin() as connection:
                if context.release_categories is not None:
                    affected, holds = self._release(connection, subject, context)
                else:
                    affected, holds = self._erase(connection, subject, context)
        except OperationalError as exc:
            # The statement's parameters are the person's identities: never quote the error text.
            raise RetryableError(
                self.system, f"database unavailable ({type(exc.orig).__name__})") from None
        except sa.exc.TimeoutError:
            raise RetryableError(self.system, "no database connection free in time") from None
        except DBAPIError as exc:
            raise PermanentError(
                self.system, f"database rejected the erasure ({type(exc.orig).__name__})") from None
        return _result(affected, holds)

    def erase_batch(self, items: Sequence[BatchItem]) -> list[EraseResult | ConnectorError]:
        """Erase the items' people in one transaction (`sql_batch`); one result or error per item.

        Releases go one at a time (they are few). When the batch's transaction fails, each person
        is erased in a transaction of their own, so one person's failure is theirs alone; a
        database that cannot be reached fails the whole batch, to be retried."""
        answers: dict[int, EraseResult | ConnectorError] = {}
        together = [(i, item) for i, item in enumerate(items) if item.context.release_categories is None]
        if len(together) > 1:
            answers.update(zip([i for i, _ in together],
                               self._erase_together([item for _, item in together]), strict=True))
        for index, item in enumerate(items):
            if index not in answers:
                answers[index] = self._erase_one(item)
        return [answers[index] for index in range(len(items))]

    def _erase_together(self, items: list[BatchItem]) -> list[EraseResult | ConnectorError]:
        from connectors.stores.sql_batch import BatchErasure  # it builds on this module

        try:
            self._ensure_archive()
            connection = self._engine.connect()
        except OperationalError as exc:
            raise RetryableError(self.system, f"database unavailable ({type(exc.orig).__name__})") from None
        except sa.exc.TimeoutError:
            raise RetryableError(self.system, "no database connection free in time") from None
        try:
            with connection, connection.begin():
                found = BatchErasure(self, connection, items).run()
        except DBAPIError as exc:
            if exc.connection_invalidated:  # the database went away, not a person's row
                raise RetryableError(
                    self.system, f"database unavailable ({type(exc.orig).__name__})") from None
            return self._one_at_a_time(items, type(exc.orig).__name__)
        except Exception as exc:  # a person's rule refused, a row nobody claims: theirs alone
            return self._one_at_a_time(items, type(exc).__name__)
        return [_result(affected, holds) for affected, holds in found]

    def _one_at_a_time(self, items: list[BatchItem], why: str) -> list[EraseResult | ConnectorError]:
        log.info("%s: a batch of %d failed as a whole (%s); erasing one person at a time",
                 self.system, len(items), why)
        return [self._erase_one(item) for item in items]

    def _erase_one(self, item: BatchItem) -> EraseResult | ConnectorError:
        try:
            return self.erase(item.subject, item.context)
        except ConnectorError as exc:
            return exc

    def _erase(self, connection: sa.Connection, subject: SubjectIdentities, context: TaskContext,
               ) -> tuple[int, dict[str, Hold]]:
        affected = 0
        holds: dict[str, Hold] = {}
        for rule in self.settings.tables:
            table = self._table(rule.table, connection)
            condition = self._condition(table, rule, subject, connection)
            if condition is None:
                continue
            if rule.action == "delete":
                affected += max(connection.execute(sa.delete(table).where(condition)).rowcount, 0)
            elif rule.action == "anonymise":
                for column in rule.set:
                    self._column(table, rule, column)
                affected += max(connection.execute(
                    sa.update(table).where(condition).values(**rule.set)).rowcount, 0)
            else:
                count, hold = self._hold(connection, table, rule, condition, context)
                affected += count
                if hold is not None:
                    previous = holds.get(hold.data_category)
                    if previous is None or previous.retain_until < hold.retain_until:
                        holds[hold.data_category] = hold
        return affected, holds

    def _hold(self, connection: sa.Connection, table: sa.Table, rule: TableRule, condition: Any,
              context: TaskContext) -> tuple[int, Hold | None]:
        policy = context.retention
        category = rule.category or ""
        if policy is None or policy.rule(category) is None:
            raise PermanentError(self.system, f"no retention rule for category {category!r}: "
                                              "nothing may be held without one")
        received_at = context.received_at or self.clock()
        if rule.hold_mode == "mark":
            marker = self._column(table, rule, rule.retain_until_column)
            condition = sa.and_(condition, marker.is_(None))  # held already: nothing changes
        rows = [dict(r._mapping) for r in connection.execute(sa.select(table).where(condition))]
        if not rows:
            return 0, None
        clock = self._column(table, rule, rule.clock_column) if rule.clock_column else None
        keys = [c for c in table.primary_key.columns]
        if not keys:
            raise PermanentError(self.system, f"table {rule.table!r} needs a primary key to hold rows")
        latest: datetime | None = None
        now = self.clock()
        for row in rows:
            record_date = as_date(row.get(clock.name)) if clock is not None else None
            until = policy.retain_until(category, received_at, record_date)
            where = sa.and_(*(k == row[k.name] for k in keys))
            if until <= now:  # its retention period is already over: nothing justifies keeping it
                connection.execute(sa.delete(table).where(where))
                continue
            latest = until if latest is None or until > latest else latest
            if rule.hold_mode == "mark":
                connection.execute(sa.update(table).where(where).values(
                    **{rule.retain_until_column: until, **rule.set}))
            else:
                connection.execute(archive_table.insert().values(
                    request_id=context.request_id, source_table=rule.table, data_category=category,
                    retain_until=until, archived_at=now,
                    row_data=json.dumps(row, default=str, sort_keys=True)))
                connection.execute(sa.delete(table).where(where))
        return len(rows), policy.hold(category, latest) if latest is not None else None

    def _release(self, connection: sa.Connection, subject: SubjectIdentities, context: TaskContext,
                 ) -> tuple[int, dict[str, Hold]]:
        """Erase the held rows of the released categories whose retention has ended, and only
        those; whatever of them is still under hold is returned, category -> its latest end."""
        released = set(context.release_categories or ())
        now = self.clock()
        affected = 0
        still_held: dict[str, datetime] = {}
        for rule in self.settings.tables:
            if rule.action != "hold" or rule.category not in released:
                continue
            if rule.hold_mode == "archive":
                count, until = self._release_archived(connection, rule, context.request_id, now)
            else:
                count, until = self._release_marked(connection, rule, subject, now)
            affected += count
            if until is not None:
                category = rule.category or ""
                still_held[category] = max(until, still_held.get(category, until))
        return affected, {c: self._still_held(c, until, context) for c, until in still_held.items()}

    def _release_archived(self, connection: sa.Connection, rule: TableRule, request_id: str,
                          now: datetime) -> tuple[int, datetime | None]:
        held = sa.and_(archive_table.c.request_id == request_id,
                       archive_table.c.source_table == rule.table,
                       archive_table.c.data_category == rule.category)
        count = max(connection.execute(sa.delete(archive_table).where(
            held, archive_table.c.retain_until <= now)).rowcount, 0)
        return count, _aware(connection.execute(
            sa.select(sa.func.max(archive_table.c.retain_until)).where(held)).scalar())

    def _release_marked(self, connection: sa.Connection, rule: TableRule, subject: SubjectIdentities,
                        now: datetime) -> tuple[int, datetime | None]:
        # Rows held in place may no longer match the person (the parent row was anonymised):
        # a mark whose date has passed is what makes a row erasable, and only that.
        table = self._table(rule.table, connection)
        marker = self._column(table, rule, rule.retain_until_column)
        count = max(connection.execute(sa.delete(table).where(
            marker.is_not(None), marker <= now)).rowcount, 0)
        # What still matches the person is still held (rows found only through an anonymised
        # parent cannot be told apart: none of them was deleted early either way).
        condition = self._condition(table, rule, subject, connection)
        if condition is None:
            return count, None
        return count, _aware(connection.execute(
            sa.select(sa.func.max(marker)).where(condition, marker.is_not(None))).scalar())

    def _still_held(self, category: str, until: datetime, context: TaskContext) -> Hold:
        policy = context.retention
        if policy is None or policy.rule(category) is None:
            raise PermanentError(self.system, f"release refused: category {category!r} is held until "
                                              f"{until.date().isoformat()} and has no retention rule")
        return policy.hold(category, until)

    def identity_values(self) -> Iterator[tuple[IdentityTypeName, str]]:
        """Every distinct value of every column a rule finds people by (a restored store's people).

        Read in batches, so a large table is never held in memory at once."""
        with self._engine.connect() as connection:
            for table_name, identity_type, column_name in self.settings.identity_columns():
                table = self._table(table_name, connection)
                if column_name not in table.c:
                    raise PermanentError(self.system, f"table {table_name!r} has no column {column_name!r}")
                column = table.c[column_name]
                rows = connection.execution_options(stream_results=True, yield_per=1000).execute(
                    sa.select(column).distinct().where(column.is_not(None)))
                for (value,) in rows:
                    if isinstance(value, str):
                        yield identity_type, value

    def purge_ended_holds(self) -> int:
        """Delete, for everyone, the held rows whose own `retain_until` has passed; how many.

        What a release does, without a task: after a restore, rows released since the backup are
        back, and nothing justifies keeping them."""
        self._ensure_archive()
        now = self.clock()
        purged = 0
        with self._engine.begin() as connection:
            for rule in self.settings.tables:
                if rule.action != "hold":
                    continue
                if rule.hold_mode == "archive":
                    ended = sa.delete(archive_table).where(
                        archive_table.c.source_table == rule.table,
                        archive_table.c.data_category == rule.category, archive_table.c.retain_until <= now)
                else:
                    table = self._table(rule.table, connection)
                    marker = self._column(table, rule, rule.retain_until_column)
                    ended = sa.delete(table).where(marker.is_not(None), marker <= now)
                purged += max(connection.execute(ended).rowcount, 0)
        return purged

    def check(self) -> str:
        try:
            with self._engine.connect() as connection:
                for name in {r.table for r in self.settings.tables}:
                    self._table(name, connection)
        except OperationalError as exc:
            raise RetryableError(self.system, f"database unavailable ({type(exc.orig).__name__})") from None
        return f"{len(self.settings.tables)} table rule(s), every table found"

    def close(self) -> None:
        self._engine.dispose()


def _result(affected: int, holds: dict[str, Hold]) -> EraseResult:
    status: Literal["held", "erased", "not_found"] = (
        "held" if holds else "erased" if affected else "not_found")
    return EraseResult(status=status, evidence=Evidence(records_affected=affected),
                       holds=sorted(holds.values(), key=lambda h: h.data_category))


def _aware(value: Any) -> datetime | None:
    """A stored end of hold as an aware UTC datetime (SQLite and MariaDB return it naive, in UTC)."""
    moment = as_date(value)
    if not isinstance(moment, datetime):
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def as_date(value: Any) -> datetime | date | None:
    """A row's date (SQLite returns text)."""
    if value is None or isinstance(value, datetime | date):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    return None


def _sqlite_foreign_keys(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()

