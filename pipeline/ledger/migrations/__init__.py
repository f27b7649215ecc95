"""The ledger's schema migrations (Alembic), run from code: no alembic.ini.

`upgrade(url)` brings a database to head. A ledger written before migrations existed
(its tables there, no `alembic_version`) is adopted: checked against the baseline,
completed with any table that code created only on demand, and stamped at baseline.

Every process opening a ledger asks for an upgrade, and nearly always the ledger is at head
already: that is answered by one SELECT against the head read from the revision files
(`head_revision`), without importing Alembic (a tenth of a short command's start-up). Anything
else (an older or unknown revision, no `alembic_version`, several heads) goes through Alembic as
before, which upgrades, adopts or refuses.

A new migration: `alembic.command.revision(config(url), "what it does", autogenerate=True)`
against a database at head, then review the file it writes in `versions/`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

from pipeline.ledger.engine import create_ledger_engine, exclusive

if TYPE_CHECKING:
    from alembic.config import Config

BASELINE = "0001"
VERSIONS_DIR = Path(__file__).parent / "versions"
# Processes starting together (aggregator, connectors, desk) upgrade one at a time.
_PG_LOCK_KEY = 0x6C6564676572  # "ledger"
_MYSQL_LOCK_NAME = "erasure_ledger_migrations"
_MYSQL_LOCK_TIMEOUT_S = 600
# `revision = "0008"` (or `revision: str = '0008'`) at the start of a line of a revision file.
_REVISION_LINE = re.compile(r"""^(down_revision|revision)\s*(?::[^=]*)?=\s*(.*?)\s*$""", re.MULTILINE)
_QUOTED = re.compile(r"""^(['"])([^'"]+)\1$""")

log = logging.getLogger(__name__)


def config(url: str | None = None, connection: sa.Connection | None = None) -> Config:
    """An Alembic configuration for these migrations, on `connection` or else `url`."""
    from alembic.config import Config

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
        upgrade_engine(engine)
    finally:
        engine.dispose()


def upgrade_engine(engine: sa.Engine) -> None:
    """Bring the ledger database of `engine` to the newest schema (the engine stays open)."""
    if at_head(engine):
        return
    _alembic_upgrade(engine)


def _alembic_upgrade(engine: sa.Engine) -> None:
    from alembic import command
    from alembic.script import ScriptDirectory

    with _migration_lock(engine) as conn:
        cfg = config(connection=conn)
        if _unversioned_ledger(conn):
            log.info("ledger written before migrations: adopting it at revision %s", BASELINE)
            ScriptDirectory.from_config(cfg).get_revision(BASELINE).module.adopt(conn)
            command.stamp(cfg, BASELINE)
        command.upgrade(cfg, "head")


def at_head(engine: sa.Engine) -> bool:
    """Whether the database is stamped with the one head revision, read without Alembic. False
    whenever in doubt (no `alembic_version`, several rows, revision files it cannot read): Alembic
    decides then. Migrations only move forward, so a ledger at head needs no lock to say so."""
    head = head_revision()
    if head is None:
        return False
    with engine.connect() as conn:
        try:
            stamped = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all()
        except sa.exc.DBAPIError:  # no alembic_version (a new or unversioned ledger): not at head
            return False
    return stamped == [head]


@cache
def head_revision() -> str | None:
    """The one head of the revision files, from their `revision` and `down_revision` lines; None
    when a file does not say both plainly (a merge, a computed value) or there is not one head."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in sorted(VERSIONS_DIR.glob("*.py")):
        lines = [(match[1], match[2]) for match in _REVISION_LINE.finditer(path.read_text())]
        found: dict[str, str] = dict(lines)
        if len(found) != 2 or len(lines) != 2:  # each said once, or Alembic reads the file
            return None
        revision = _QUOTED.match(found["revision"])
        if revision is None:
            return None
        revisions.add(revision.group(2))
        if found["down_revision"] != "None":
            parent = _QUOTED.match(found["down_revision"])
            if parent is None:
                return None
            parents.add(parent.group(2))
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 and parents <= revisions else None


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
