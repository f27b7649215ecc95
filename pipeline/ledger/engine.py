"""The ledger's database engine: one set-up for the ledger and its migrations.

A SQLite ledger holds sealed identities and wrapped data keys: its file, `-wal` and `-shm`
are its owner's only, and deleted content is overwritten (secure_delete).
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path
from typing import Any

import sqlalchemy as sa

OWNER_ONLY = 0o600


def create_ledger_engine(url: str) -> sa.Engine:
    connect_args: dict[str, Any] = {}
    if url.startswith("sqlite"):
        connect_args = {"timeout": 30, "check_same_thread": False}
    engine = sa.create_engine(url, connect_args=connect_args, pool_pre_ping=True)
    if url.startswith("sqlite"):
        database = sa.make_url(url).database
        path = Path(database) if database and database != ":memory:" else None
        if path is not None:
            _create_owner_only(path)
        sa.event.listen(engine, "connect", partial(_sqlite_pragmas, path))
        sa.event.listen(engine, "begin", _sqlite_begin)
    return engine


def _create_owner_only(path: Path) -> None:
    """Create the database file 0600 before SQLite does: its -wal and -shm take the file's mode."""
    if not path.exists() and path.parent.is_dir():  # else SQLite's own error names the problem
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, OWNER_ONLY))


def _restrict_files(path: Path) -> None:
    # Ledgers created before this (0644) are tightened at their next connection.
    for each in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            if each.stat().st_mode & 0o777 != OWNER_ONLY:
                each.chmod(OWNER_ONLY)
        except FileNotFoundError:
            pass


def exclusive(engine: sa.Engine) -> sa.Engine:
    """The engine whose transactions take the write lock when they begin.

    On SQLite that is BEGIN IMMEDIATE; PostgreSQL and MariaDB writers lock a row instead
    (the chain head), so this changes nothing there.
    """
    return engine.execution_options(immediate=True)


def _sqlite_begin(conn: sa.Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("immediate") else "BEGIN")


def _sqlite_pragmas(path: Path | None, dbapi_connection: Any, _record: Any) -> None:
    # pysqlite would only BEGIN at the first write, after our reads: we begin ourselves.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    # A destroyed data key is zeroed in the pages, not just unlinked (the WAL: see the key store).
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.close()
    if path is not None:
        _restrict_files(path)
