"""Crypto-shredding that holds: data keys wrapped by a KEK outside the ledger, owner-only ledger
files, and nothing of a destroyed key left in the SQLite database or its WAL."""

from __future__ import annotations

import os
import re
import sqlite3
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from pipeline import wiring
from pipeline.cli import main
from pipeline.crypto import MissingKeyError, init_keys, load_kek, new_data_key, rotate_kek
from pipeline.keywrap import AesGcmKeyWrapper, KeyWrapError
from pipeline.ledger import Ledger, data_keys_table, open_ledger
from pipeline.ledger.keystore import NoKekError
from pipeline.settings import Settings
from schemas import ErasureOutcome, ErasurePlanned, PlannedTarget, SealedIdentities

RID = "0b9a7c65-1d2e-4f30-8a4b-5c6d7e8f9a0b"
OTHER = "f1e2d3c4-b5a6-4978-8695-a4b3c2d1e0f9"
T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    (tmp_path / "home").mkdir()
    return tmp_path / "home" / "ledger.db"


@pytest.fixture
def kek() -> AesGcmKeyWrapper:
    return AesGcmKeyWrapper.generate()


@pytest.fixture
def sqlite_ledger(db_path: Path, kek: AesGcmKeyWrapper) -> Iterator[Ledger]:
    ledger = open_ledger(f"sqlite:///{db_path}", kek)
    yield ledger
    ledger.close()


def stored_key(ledger: Ledger, request_id: str) -> bytes:
    with ledger.engine.connect() as conn:
        value = conn.execute(sa.select(data_keys_table.c.data_key)
                             .where(data_keys_table.c.request_id == request_id)).scalar_one()
    return bytes(value)


def files_bytes(db_path: Path) -> bytes:
    """The database, its WAL and shared-memory index, as a copy of the disk would show them."""
    parts = [db_path, db_path.with_name(db_path.name + "-wal"), db_path.with_name(db_path.name + "-shm")]
    return b"".join(p.read_bytes() for p in parts if p.exists())


def complete(ledger: Ledger, request_id: str) -> None:
    sealed = SealedIdentities(alg="secretbox-xsalsa20poly1305", key_id=request_id, ciphertext="c2VjcmV0")
    ledger.record([
        ErasurePlanned(request_id=request_id, received_at=T0, due_at=T0 + timedelta(days=30),
                       subject_ref="sr_s", identities=sealed, planned_at=T0,
                       targets=[PlannedTarget(system="brevo", expected_turnaround_s=60)]),
        ErasureOutcome(request_id=request_id, system="brevo", attempt=1, status="erased", occurred_at=T0),
    ], T0)


@pytest.mark.parametrize("database", ["sqlite_url", "postgres_url", "mariadb_url"])
def test_keys_at_rest_are_wrapped_and_fit_the_column(database: str, request: pytest.FixtureRequest) -> None:
    ledger = open_ledger(request.getfixturevalue(database), AesGcmKeyWrapper.generate())
    try:
        key = new_data_key()
        assert ledger.grant_data_keys({RID: key}, T0)[RID].data_key == key
        at_rest = stored_key(ledger, RID)
        assert key not in at_rest and len(at_rest) == 64  # LargeBinary(64): TINYBLOB on MariaDB
        assert ledger.data_key(RID) == key
    finally:
        ledger.close()


def test_the_raw_sqlite_files_never_hold_the_clear_key(sqlite_ledger: Ledger, db_path: Path) -> None:
    key = new_data_key()
    sqlite_ledger.grant_data_keys({RID: key}, T0)
    assert key not in files_bytes(db_path)
    assert sqlite_ledger.data_key(RID) == key


def test_a_wrapped_key_copied_to_another_request_does_not_open(sqlite_ledger: Ledger) -> None:
    sqlite_ledger.grant_data_keys({RID: new_data_key(), OTHER: new_data_key()}, T0)
    with sqlite_ledger.engine.begin() as conn:  # someone with database access swaps the rows
        conn.execute(data_keys_table.update().where(data_keys_table.c.request_id == OTHER)
                     .values(data_key=stored_key(sqlite_ledger, RID)))
    with pytest.raises(KeyWrapError, match=f"{OTHER}.*wrapped for another request"):
        sqlite_ledger.data_key(OTHER)


def test_without_the_kek_the_keys_cannot_be_read(sqlite_ledger: Ledger, db_path: Path,
                                                 tmp_path: Path) -> None:
    sqlite_ledger.grant_data_keys({RID: new_data_key()}, T0)
    blind = open_ledger(f"sqlite:///{db_path}")
    wrong = open_ledger(f"sqlite:///{db_path}", AesGcmKeyWrapper.generate())
    try:
        with pytest.raises(NoKekError, match=r"without a key-encryption key.*ERASURE_KEK"):
            blind.data_key(RID)
        with pytest.raises(NoKekError):
            blind.grant_data_keys({OTHER: new_data_key()}, T0)
        with pytest.raises(KeyWrapError, match="not among the configured KEKs"):
            wrong.data_key(RID)
    finally:
        blind.close()
        wrong.close()
    # The pipeline itself never opens a ledger without its KEK: the error names file and variable.
    home = tmp_path / "bare"
    with pytest.raises(wiring.SetupError, match=re.escape(str(home / "keys" / "kek")) + ".*ERASURE_KEK"):
        wiring.ledger(Settings(home_dir=home, database_url=f"sqlite:///{home / 'ledger.db'}"), data_keys=True)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_ledger_files_and_the_kek_are_owner_only(sqlite_ledger: Ledger, db_path: Path,
                                                 tmp_path: Path) -> None:
    sqlite_ledger.grant_data_keys({RID: new_data_key()}, T0)
    with sqlite_ledger.engine.connect() as conn:  # a reader holds the WAL index open
        conn.execute(sa.select(data_keys_table)).all()
        for suffix in ("", "-wal", "-shm"):
            assert mode(db_path.with_name(db_path.name + suffix)) == 0o600, suffix
    init_keys(tmp_path / "keys")
    assert mode(tmp_path / "keys" / "kek") == 0o600


def test_a_ledger_file_created_world_readable_is_tightened(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    sqlite3.connect(path).close()
    path.chmod(0o644)
    open_ledger(f"sqlite:///{path}").close()
    assert mode(path) == 0o600


def test_after_destroy_no_trace_of_the_key_in_the_database_or_wal(sqlite_ledger: Ledger,
                                                                  db_path: Path) -> None:
    key = new_data_key()
    # Keys of other requests live around it on the same page, so its bytes would stay in the page's
    # free space (without secure_delete) and in the WAL's old page images (without a checkpoint).
    neighbours = {f"{n:08d}-0000-4000-8000-000000000000": new_data_key() for n in range(10)}
    sqlite_ledger.grant_data_keys(neighbours, T0)
    sqlite_ledger.grant_data_keys({RID: key}, T0)
    sqlite_ledger.grant_data_keys({OTHER: new_data_key()}, T0)
    wrapped = stored_key(sqlite_ledger, RID)
    complete(sqlite_ledger, RID)
    assert wrapped in files_bytes(db_path), "the test looks at the right files"
    assert sqlite_ledger.destroy_data_keys(T0 + timedelta(days=2), grace_s=86400) == 1
    leftovers = files_bytes(db_path)
    assert wrapped not in leftovers and key not in leftovers
    assert sqlite_ledger.data_key(RID) is None


def test_legacy_clear_keys_are_read_then_rewrapped_by_the_command(sqlite_ledger: Ledger, db_path: Path,
                                                                  kek: AesGcmKeyWrapper) -> None:
    legacy = new_data_key()
    with sqlite_ledger.engine.begin() as conn:  # as a ledger written before wrapping holds it
        conn.execute(data_keys_table.insert().values(request_id=RID, data_key=legacy, created_at=T0))
    # Rows after it on the page: its old cell becomes free space, which secure_delete zeroes.
    sqlite_ledger.grant_data_keys({f"{n:08d}-0000-4000-8000-000000000000": new_data_key()
                                   for n in range(10)}, T0)
    assert sqlite_ledger.data_key(RID) == legacy
    assert sqlite_ledger.grant_data_keys({RID: new_data_key()}, T0)[RID].data_key == legacy
    assert sqlite_ledger.rewrap_data_keys() == 1
    assert stored_key(sqlite_ledger, RID) != legacy and legacy not in files_bytes(db_path)
    assert sqlite_ledger.data_key(RID) == legacy
    assert sqlite_ledger.rewrap_data_keys() == 0


def test_kek_rotation_then_rewrap_then_retiring_the_old_kek(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {"ERASURE_HOME_DIR": str(home), "ERASURE_DATABASE_URL": f"sqlite:///{home / 'ledger.db'}"}
    runner = CliRunner()
    assert runner.invoke(main, ["keys", "init"], env=env).exit_code == 0
    settings = Settings(home_dir=home, database_url=env["ERASURE_DATABASE_URL"])
    key = new_data_key()
    ledger = wiring.ledger(settings, data_keys=True)
    ledger.grant_data_keys({RID: key}, T0)
    ledger.close()
    old_kek_id = wiring.key_wrapper(settings).key_id

    rotated = runner.invoke(main, ["keys", "rotate-kek"], env=env)
    assert rotated.exit_code == 0, rotated.output
    assert wiring.key_wrapper(settings).key_id != old_kek_id
    assert mode(home / "keys" / "kek") == 0o600
    rewrapped = runner.invoke(main, ["keys", "rewrap"], env=env)
    assert rewrapped.exit_code == 0 and "1 data keys re-wrapped" in rewrapped.output, rewrapped.output

    kek_file = home / "keys" / "kek"
    kek_file.write_text(kek_file.read_text().split()[0] + "\n")  # the old KEK retired
    ledger = wiring.ledger(settings, data_keys=True)
    try:
        assert ledger.data_key(RID) == key
    finally:
        ledger.close()


def test_the_kek_from_the_environment_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import base64

    raw = os.urandom(32)
    monkeypatch.setenv("ERASURE_KEK", base64.b64encode(raw).decode())
    settings = Settings(home_dir=tmp_path)
    assert wiring.key_wrapper(settings).key_id == AesGcmKeyWrapper([raw]).key_id
    assert not (tmp_path / "keys" / "kek").exists()
    with pytest.raises(MissingKeyError, match="ERASURE_KEK is not usable"):
        load_kek(tmp_path, "c2hvcnQ=")


def test_rotate_kek_keeps_the_older_keys_readable(tmp_path: Path) -> None:
    init_keys(tmp_path)
    before = load_kek(tmp_path)
    wrapped = before.wrap(RID, b"k" * 32)
    rotate_kek(tmp_path)
    after = load_kek(tmp_path)
    assert after.key_id != before.key_id and after.unwrap(RID, wrapped) == b"k" * 32
