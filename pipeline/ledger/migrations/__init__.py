"""The ledger's schema migrations (Alembic), run from code: no alembic.ini.

`upgrade(url)` brings a database to head. A ledger written before migrations existed
(its tables there, no `alembic_version`) is adopted: checked against the baseline,
completed with any table that code created only on demand, and stamped at baseline.

A new migration: `alembic.command.revision(config(url), "what it does", autogenerate=True)`
against a database at head, then review the file it writes in `versions/`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from pipeline.ledger.engine import create_ledger_engine, exclusive

BASELINE = "0001"
# Processes starting together (aggregator, connectors, desk) upgrade one at a time.
_PG_LOCK_KEY = 0x6C6564676572  # "ledger"
_MYSQL_LOCK_NAME = "erasure_ledger_migrations"
_MYSQL_LOCK_TIMEOUT_S = 600

log = logging.getLogger(__name__)


def config(url: str | None = None, connection: sa.Connection | None = None) -> Config:
    """An Alembic configuration for these migrations, on `connection` or else `url`."""
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent))
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["connection"] = connection
    return cfg


def upgrade(url: str) -> None:
    """Bring the ledger database at `url` to the newest schema."""
    engine = create_ledger_engine(url)
    try:
        with _migration_lock(engine) as conn:
            cfg = config(connection=conn)
            if _unversioned_ledger(conn):
                log.info("ledger written before migrations: adopting it at revision %s", BASELINE)
                ScriptDirectory.from_config(cfg).get_revision(BASELINE).module.adopt(conn)
                command.stamp(cfg, BASELINE)
            command.upgrade(cfg, "head")
    finally:
        engine.dispose()


def current_revision(url: str) -> str | None:
    engine = create_ledger_engine(url)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("alembic_version"):
                return None
            return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
    finally:
        engine.dispose()


def _unversioned_ledger(conn: sa.Connection) -> bool:
    tables = set(sa.inspect(conn).get_table_names())
    return "alembic_version" not in tables and "erasure_events" in tables


@contextmanager
def _migration_lock(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A transaction no other migrating process runs beside (SQLite: BEGIN IMMEDIATE)."""
    dialect = engine.dialect.name
    with exclusive(engine).connect() as conn:
        try:
            with conn.begin():
                if dialect == "postgresql":
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
                elif dialect in ("mysql", "mariadb"):
                    # DDL commits on its own there: a session lock, held until released.
                    conn.execute(sa.text("SELECT GET_LOCK(:name, :timeout_s)"),
                                 {"name": _MYSQL_LOCK_NAME, "timeout_s": _MYSQL_LOCK_TIMEOUT_S})
                yield conn
        finally:
            if dialect in ("mysql", "mariadb"):
                conn.execute(sa.text("SELECT RELEASE_LOCK(:name)"), {"name": _MYSQL_LOCK_NAME})
                conn.commit()
