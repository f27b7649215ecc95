"""An internal SQL store (PostgreSQL, MariaDB, SQLite) erased by rules declared per table.

Each rule deletes the subject's rows or anonymises named columns, matched on the
subject's identities. Rules run in the order declared (declare children before
parents so foreign keys hold), all in one transaction per request.
"""

from __future__ import annotations

import threading
from typing import Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy.exc import DBAPIError, NoSuchTableError, OperationalError

from connectors.base import (
    EraseResult,
    PermanentError,
    RetryableError,
    TaskContext,
    require_secret,
)
from schemas import Evidence, SubjectIdentities

IdentityTypeName = Literal["email", "phone", "user_id", "account_id", "customer_id"]


class TableRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    table: str = Field(min_length=1)
    match: dict[IdentityTypeName, str] = Field(
        min_length=1, description="identity type -> column holding it"
    )
    action: Literal["delete", "anonymise"]
    set: dict[str, str | int | None] = Field(
        default_factory=dict, description="anonymise: column -> replacement value (null allowed)"
    )

    @model_validator(mode="after")
    def _anonymise_needs_columns(self) -> TableRule:
        if self.action == "anonymise" and not self.set:
            raise ValueError("action 'anonymise' needs 'set': the columns to overwrite")
        if self.action == "delete" and self.set:
            raise ValueError("'set' only applies to action 'anonymise'")
        return self


class SqlStoreSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str | None = Field(default=None, description="A URL without secrets, e.g. sqlite:///site.db")
    url_env: str | None = Field(default=None, description="Environment variable holding the URL")
    tables: list[TableRule] = Field(min_length=1)

    @model_validator(mode="after")
    def _one_url(self) -> SqlStoreSettings:
        if (self.url is None) == (self.url_env is None):
            raise ValueError("give exactly one of 'url' and 'url_env'")
        return self


class SqlStoreConnector:
    def __init__(self, system: str, settings: SqlStoreSettings) -> None:
        self.system = system
        self.settings = settings
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

    def _condition(self, table: sa.Table, rule: TableRule, subject: SubjectIdentities) -> Any:
        clauses = []
        for identity_type, column_name in rule.match.items():
            if column_name not in table.c:
                raise PermanentError(self.system, f"table {rule.table!r} has no column {column_name!r}")
            values = [i.identity_value.strip() for i in subject.identities
                      if i.identity_type == identity_type]
            if not values:
                continue
            column = table.c[column_name]
            if identity_type == "email":
                clauses.append(sa.func.lower(column).in_([v.lower() for v in values]))
            else:
                clauses.append(column.in_(values))
        return sa.or_(*clauses) if clauses else None

    def erase(self, subject: SubjectIdentities, context: TaskContext) -> EraseResult:
        affected = 0
        try:
            with self._engine.begin() as connection:
                for rule in self.settings.tables:
                    table = self._table(rule.table, connection)
                    condition = self._condition(table, rule, subject)
                    if condition is None:
                        continue
                    if rule.action == "delete":
                        result = connection.execute(sa.delete(table).where(condition))
                    else:
                        unknown = [c for c in rule.set if c not in table.c]
                        if unknown:
                            raise PermanentError(
                                self.system, f"table {rule.table!r} has no column {unknown[0]!r}")
                        result = connection.execute(
                            sa.update(table).where(condition).values(**rule.set))
                    affected += max(result.rowcount, 0)
        except OperationalError as exc:
            # The statement's parameters are the person's identities: never quote the error text.
            raise RetryableError(
                self.system, f"database unavailable ({type(exc.orig).__name__})") from None
        except DBAPIError as exc:
            raise PermanentError(
                self.system, f"database rejected the erasure ({type(exc.orig).__name__})") from None
        return EraseResult(
            status="erased" if affected else "not_found",
            evidence=Evidence(records_affected=affected),
        )

    def close(self) -> None:
        self._engine.dispose()


def _sqlite_foreign_keys(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
