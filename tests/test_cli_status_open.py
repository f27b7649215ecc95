"""`erasure status` opens only the ledger's read side, and still upgrades or refuses an out-of-date schema.

A ledger at head is recognised by one SELECT against the head read from the revision files, without
Alembic; anything else goes through Alembic as before. These tests hold that behaviour (what is
imported, what the schema becomes), never a duration: timings are in bench/cli_latency.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.script import ScriptDirectory

from pipeline.ledger import migrations
from pipeline.ledger.migrations import config, current_revision, head_revision, upgrade
from tests.cli_probe import probe

HEAD = ScriptDirectory.from_config(config()).get_current_head()
# What a read-only command has no use for: the migrations' framework, the event contracts and the
# writers' parts of the ledger, the stream and broker clients, the desk, MySQL's dialect.
NOT_FOR_STATUS = {"alembic", "schemas.models", "pipeline.ledger.store", "pipeline.ledger.state",
                  "pipeline.ledger.keystore", "pipeline.codec", "faust", "kafka", "aiokafka", "fastapi",
                  "sqlalchemy.dialects.mysql"}


def environment(url: str, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ERASURE_")}
    env.update(ERASURE_HOME_DIR=str(home), ERASURE_DATABASE_URL=url)
    return env


def erasure(url: str, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], env=environment(url, home),
                          capture_output=True, text=True, timeout=120, check=False)


def probed(url: str, home: Path, *args: str) -> tuple[str, set[str]]:
    """The exit code of `erasure ARGS` run in a probe, and every module it imported."""
    return probe(args, environment(url, home))


def imported_of(modules: set[str], names: set[str]) -> set[str]:
    return {name for name in names if name in modules or any(m.startswith(name + ".") for m in modules)}


@pytest.fixture(params=["sqlite", "postgres"])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_url"))
    return f"sqlite:///{tmp_path / 'ledger.db'}"


def stamped(url: str) -> list[str]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars())
    finally:
        engine.dispose()


def test_the_head_read_from_the_revision_files_is_alembics() -> None:
    assert HEAD is not None and head_revision() == HEAD


def test_status_of_a_ledger_at_head_imports_no_migration_framework_nor_event_contracts(
        tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    upgrade(url)
    for args in (("status", "--lanes"), ("status", "5a1d7c9e-2b3f-4e6a-8c0d-1e2f3a4b5c6d", "--json")):
        code, modules = probed(url, tmp_path, *args)
        assert code in ("0", "None", "1") and imported_of(modules, NOT_FOR_STATUS) == set(), args
    assert stamped(url) == [HEAD]


def test_importing_the_cli_imports_no_migration_framework_nor_broker_client(tmp_path: Path) -> None:
    code, modules = probed(f"sqlite:///{tmp_path / 'ledger.db'}", tmp_path, "--help")
    assert code in ("0", "None")
    assert imported_of(modules, {"alembic", "faust", "kafka", "aiokafka", "sqlalchemy", "schemas"}) == set()


def test_status_upgrades_an_out_of_date_ledger(ledger_url: str, tmp_path: Path) -> None:
    command.upgrade(config(ledger_url), "0007")  # before the tallies that --lanes reads
    assert current_revision(ledger_url) == "0007"
    done = erasure(ledger_url, tmp_path, "status", "--lanes")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "ledger chain: 0 events" in done.stdout
    assert stamped(ledger_url) == [HEAD]


def test_status_refuses_a_ledger_of_a_revision_this_code_does_not_know(ledger_url: str,
                                                                       tmp_path: Path) -> None:
    """A ledger a newer release migrated: Alembic refuses it, as before, and nothing is changed."""
    upgrade(ledger_url)
    engine = sa.create_engine(ledger_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE alembic_version SET version_num = 'ffffffffffff'"))
    finally:
        engine.dispose()
    done = erasure(ledger_url, tmp_path, "status", "--lanes")
    assert done.returncode != 0 and "ffffffffffff" in done.stderr
    assert stamped(ledger_url) == ["ffffffffffff"]


def test_status_on_a_database_that_does_not_exist_says_which_setting_to_fix(postgres_url: str,
                                                                             tmp_path: Path) -> None:
    missing = sa.make_url(postgres_url).set(database="no_such_ledger_db", password="s3cret-pw")
    done = erasure(missing.render_as_string(hide_password=False), tmp_path, "status", "--lanes")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    assert done.stderr.startswith("Error: cannot open the ledger at ")
    assert "(ERASURE_DATABASE_URL)" in done.stderr and "no_such_ledger_db" in done.stderr
    assert "s3cret-pw" not in done.stderr, "the password is hidden"


def test_status_adopts_a_ledger_written_before_migrations(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "ledger.db"
    with sqlite3.connect(path) as conn:
        conn.executescript((Path(__file__).parent / "data" / "ledger_v0.sql").read_text())
    done = erasure(f"sqlite:///{path}", tmp_path, "status", "--lanes")
    assert done.returncode == 0, done.stderr[-2000:]
    assert stamped(f"sqlite:///{path}") == [HEAD]


@pytest.fixture
def versions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A copy of the revision files that `head_revision` reads instead of the real ones."""
    copy = tmp_path / "versions"
    shutil.copytree(migrations.VERSIONS_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(migrations, "VERSIONS_DIR", copy)
    head_revision.cache_clear()
    yield copy
    head_revision.cache_clear()


def test_a_new_revision_file_is_the_head(versions: Path) -> None:
    (versions / "0099_next.py").write_text(f'"""Next."""\nrevision: str = "0099"\ndown_revision = "{HEAD}"\n')
    assert head_revision() == "0099"


@pytest.mark.parametrize("text", [
    'revision = "0099"\ndown_revision = ("0007", "0008")\n',  # a merge
    'revision = make_id()\ndown_revision = "0008"\n',  # computed
    'revision = "0099"\n',  # no parent said
    'revision = "0099"\ndown_revision = "0008"\nrevision = "0100"\n',  # said twice
])
def test_a_revision_file_it_cannot_read_plainly_leaves_the_question_to_alembic(versions: Path,
                                                                                text: str) -> None:
    (versions / "0099_odd.py").write_text(text)
    assert head_revision() is None


def test_two_heads_leave_the_question_to_alembic(versions: Path) -> None:
    (versions / "0099_branch.py").write_text('revision = "0099"\ndown_revision = "0007"\n')
    assert head_revision() is None
