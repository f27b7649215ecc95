"""The ledger's database engine: one set-up for the ledger and its migrations."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa


def create_ledger_engine(url: str) -> sa.Engine:
    connect_args: dict[str, Any] = {}
    if url.startswith("sqlite"):
        connect_args = {"timeout": 30, "check_same_thread": False}
    engine = sa.create_engine(url, connect_args=connect_args, pool_pre_ping=True)
    if url.startswith("sqlite"):
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        sa.event.listen(engine, "begin", _sqlite_begin)
    return engine


def exclusive(engine: sa.Engine) -> sa.Engine:
    """The engine whose transactions take the write lock when they begin.

    On SQLite that is BEGIN IMMEDIATE; PostgreSQL and MariaDB writers lock a row instead
    (the chain head), so this changes nothing there.
    """
    return engine.execution_options(immediate=True)


def _sqlite_begin(conn: sa.Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("immediate") else "BEGIN")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # pysqlite would only BEGIN at the first write, after our reads: we begin ourselves.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
