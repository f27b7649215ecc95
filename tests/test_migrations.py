"""Alembic migrations: a new database reaches head; a ledger written before migrations is adopted."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from pipeline.ledger import Ledger, metadata, open_ledger, upgrade
from pipeline.ledger.accounts import Access
from pipeline.ledger.migrations import config, current_revision
from schemas import ErasureOutcome, ErasurePlanned, PlannedTarget, SealedIdentities

LEDGER_V0 = Path(__file__).parent / "data" / "ledger_v0.sql"
HEAD = ScriptDirectory.from_config(config()).get_current_head()
RID = "5a1d7c9e-2b3f-4e6a-8c0d-1e2f3a4b5c6d"
T0 = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)


def record_one(ledger: Ledger) -> None:
    sealed = SealedIdentities(alg="secretbox-xsalsa20poly1305", key_id=RID, ciphertext="c2VjcmV0")
    ledger.record([
        ErasurePlanned(request_id=RID, received_at=T0, due_at=T0 + timedelta(days=30), subject_ref="sr_m",
                       identities=sealed, planned_at=T0,
                       targets=[PlannedTarget(system="brevo", expected_turnaround_s=60)]),
        ErasureOutcome(request_id=RID, system="brevo", attempt=1, status="erased", occurred_at=T0),
    ], T0)


def schema_drift(url: str) -> list[object]:
    """What differs between the migrated database and the tables the code uses."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return list(compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}),
                                         metadata))
    finally:
        engine.dispose()


def sqlite_schema(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {sql for (sql,) in conn.execute("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL")}


def test_upgrade_brings_an_empty_postgres_database_to_head(postgres_url: str) -> None:
    upgrade(postgres_url)
    assert current_revision(postgres_url) == HEAD
    assert schema_drift(postgres_url) == []
    upgrade(postgres_url)  # at head already: nothing to do
    ledger = Ledger(postgres_url)
    try:
        assert ledger.chain_head() == (0, "0" * 64)
        record_one(ledger)
        view = ledger.request(RID, T0)
        assert view is not None and view.status == "completed" and view.received_at == T0
        assert ledger.verify_chain() is None
    finally:
        ledger.close()


def test_concurrent_upgrades_of_a_new_database_agree(postgres_url: str) -> None:
    """The aggregator, connector workers and desk may all start on a new database at once."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            upgrade(postgres_url)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert current_revision(postgres_url) == HEAD


OUTCOMES_TABLE = "CREATE TABLE erasure_system_outcomes"


def test_migrated_sqlite_schema_is_the_one_the_code_before_migrations_created(tmp_path: Path) -> None:
    before = tmp_path / "before.db"
    with sqlite3.connect(before) as conn:
        conn.executescript(LEDGER_V0.read_text())
    after = tmp_path / "after.db"
    upgrade(f"sqlite:///{after}")
    added = sqlite_schema(after) - sqlite_schema(before)
    assert {sql.split("(")[0].strip() for sql in added} == {
        "CREATE TABLE alembic_version", "CREATE TABLE desk_users", "CREATE TABLE intake_clients",
        # 0002: desk sessions, officers' notes
        "CREATE TABLE desk_sessions", "CREATE INDEX ix_desk_sessions_user_name ON desk_sessions",
        "CREATE TABLE erasure_notes",
        # 0003: the system rows gain re-drive counters (SQLite keeps the altered CREATE TABLE)
        "CREATE TABLE erasure_system_outcomes",
        # 0004: identity digests of erased people (replay after a restore), sweep submissions
        "CREATE TABLE erasure_identity_digests", "CREATE TABLE erasure_sweep_submissions",
        "CREATE INDEX ix_erasure_identity_digests_system_digest ON erasure_identity_digests",
        # 0006: the HTTP intake's outbox
        "CREATE TABLE intake_outbox", "CREATE INDEX ix_intake_outbox_next_check_at ON intake_outbox",
        # 0007: the list's indexes (the status index becomes the first column of one), checkpoints
        *(f"CREATE INDEX ix_erasure_requests_{name} ON erasure_requests"
          for name in ("newest", "status_newest", "channel_newest", "status_due")),
        "CREATE INDEX ix_erasure_system_outcomes_system_status ON erasure_system_outcomes",
        "CREATE TABLE erasure_chain_checkpoints",
        # 0008: tallies kept on write by triggers (on every change of a row they count), open rows' index
        "CREATE TABLE erasure_tallies",
        "CREATE INDEX ix_erasure_system_outcomes_open ON erasure_system_outcomes",
        *(f"CREATE TRIGGER {table}_tally_{op} AFTER {op.upper()} ON {table} FOR EACH ROW{when} "
          "BEGIN INSERT INTO erasure_tallies"
          for table, changed in (("erasure_requests", ("status",)),
                                 ("erasure_system_outcomes", ("system", "status", "redrives")),
                                 ("erasure_events", ("system", "kind", "status")))
          for op, when in (("insert", ""), ("delete", ""),
                           ("update", " WHEN " + " OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in changed)))),
        # 0009: the answers of the last weeks (the overview's completion times)
        "CREATE INDEX ix_erasure_system_outcomes_answered ON erasure_system_outcomes"}
    [outcomes_before] = [sql for sql in sqlite_schema(before) if sql.startswith(OUTCOMES_TABLE)]
    [outcomes_after] = [sql for sql in added if sql.startswith(OUTCOMES_TABLE)]
    counters = " redrives INTEGER DEFAULT '0' NOT NULL, silent_redrives INTEGER DEFAULT '0' NOT NULL,"
    assert counters in outcomes_after and outcomes_after.replace(counters, "") == outcomes_before
    status_index = "CREATE INDEX ix_erasure_requests_status ON erasure_requests (status)"
    assert sqlite_schema(before) - {outcomes_before, status_index} <= sqlite_schema(after)
    assert schema_drift(f"sqlite:///{after}") == []


def test_a_ledger_written_before_migrations_is_adopted_and_still_verifies(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(LEDGER_V0.read_text())
        events_before = conn.execute("SELECT * FROM erasure_events ORDER BY position").fetchall()
    url = f"sqlite:///{path}"
    assert current_revision(url) is None
    upgrade(url)
    assert current_revision(url) == HEAD
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT * FROM erasure_events ORDER BY position").fetchall() == events_before
    ledger = open_ledger(url)
    try:
        assert ledger.chain_head() == (16, events_before[-1][-1])
        assert ledger.verify_chain() is None
        assert {v.status for v in ledger.list_requests(T0)} == {"completed", "completed_with_holds"}
        record_one(ledger)
        assert ledger.verify_chain() is None and ledger.chain_head()[0] > 16
        Access(ledger).set_user("officer-1", "officer", "a long password", T0)  # tables it lacked
    finally:
        ledger.close()


def test_an_unversioned_postgres_ledger_is_adopted(postgres_url: str) -> None:
    engine = sa.create_engine(postgres_url)
    # what the code before migrations created: not the account tables, nor those of later migrations
    later = ("desk_users", "intake_clients", "desk_sessions", "erasure_notes", "erasure_identity_digests",
             "erasure_sweep_submissions", "intake_outbox", "erasure_chain_checkpoints", "erasure_tallies")
    tables = [t for t in metadata.sorted_tables if t.name not in later]
    metadata.create_all(engine, tables=tables)
    with engine.begin() as conn:  # nor the columns and indexes of later migrations
        conn.execute(sa.text("ALTER TABLE erasure_system_outcomes DROP COLUMN redrives, "
                             "DROP COLUMN silent_redrives"))
        for index in ("requests_newest", "requests_status_newest", "requests_channel_newest",
                      "requests_status_due", "system_outcomes_system_status", "system_outcomes_open",
                      "system_outcomes_answered"):
            conn.execute(sa.text(f"DROP INDEX ix_erasure_{index}"))
        conn.execute(sa.text("CREATE INDEX ix_erasure_requests_status ON erasure_requests (status)"))
    engine.dispose()
    upgrade(postgres_url)
    assert current_revision(postgres_url) == HEAD
    assert schema_drift(postgres_url) == []
    ledger = Ledger(postgres_url)
    try:
        record_one(ledger)
        assert ledger.verify_chain() is None
    finally:
        ledger.close()


def test_a_database_that_is_not_a_ledger_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE erasure_events (id INTEGER PRIMARY KEY, note TEXT)")
    with pytest.raises(RuntimeError, match="erasure_events lacks columns"):
        upgrade(f"sqlite:///{path}")
    assert current_revision(f"sqlite:///{path}") is None


def test_upgrade_on_mariadb(mariadb_url: str) -> None:
    upgrade(mariadb_url)
    assert current_revision(mariadb_url) == HEAD
    ledger = Ledger(mariadb_url)
    try:
        record_one(ledger)  # whole seconds: MariaDB's DATETIME keeps no fraction
        view = ledger.request(RID, T0)
        assert view is not None and view.status == "completed" and view.due_at == T0 + timedelta(days=30)
        assert ledger.verify_chain() is None
    finally:
        ledger.close()


def run_db_upgrade(database_url: str, home: Path) -> str:
    import os
    import subprocess
    import sys

    env = {**os.environ, "DATABASE_URL": database_url, "ERASURE_HOME_DIR": str(home)}
    done = subprocess.run([sys.executable, "-m", "pipeline.cli", "db", "upgrade"], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_erasure_db_upgrade_brings_an_empty_postgres_database_to_head(postgres_url: str,
                                                                      tmp_path: Path) -> None:
    assert HEAD is not None and HEAD in run_db_upgrade(postgres_url, tmp_path)
    assert current_revision(postgres_url) == HEAD


def test_erasure_db_upgrade_adopts_a_ledger_file_written_before_migrations(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(LEDGER_V0.read_text())
        before = conn.execute("SELECT last_position, last_hash FROM erasure_chain_head").fetchone()
    url = f"sqlite:///{path}"
    assert HEAD is not None and HEAD in run_db_upgrade(url, tmp_path)
    assert current_revision(url) == HEAD
    ledger = Ledger(url)
    try:
        assert ledger.chain_head() == tuple(before)
        assert ledger.verify_chain() is None
    finally:
        ledger.close()
