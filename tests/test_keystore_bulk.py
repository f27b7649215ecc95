"""The bulk data-key lookup gives what the single one gives, on SQLite, PostgreSQL and MariaDB.

A batch of tasks opens its identities with `KeyStore.data_keys`: each live key unwrapped with
the KEK, a destroyed key and an unknown request None, exactly as `data_key` answers one by one.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from pipeline.crypto import new_data_key
from pipeline.keywrap import AesGcmKeyWrapper
from pipeline.ledger import Ledger, data_keys_table, open_ledger
from pipeline.ledger.keystore import KEYS_PER_QUERY
from schemas import ErasureOutcome, ErasurePlanned, PlannedTarget, SealedIdentities

T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)  # whole seconds: MariaDB's DATETIME keeps no fraction


@pytest.fixture(params=["sqlite", "postgres", "mariadb"])
def ledger(request: pytest.FixtureRequest) -> Ledger:
    url = request.getfixturevalue(f"{request.param}_url")
    instance = open_ledger(url, AesGcmKeyWrapper.generate())
    request.addfinalizer(instance.close)
    return instance


def finish(ledger: Ledger, request_id: str) -> None:
    """The request planned for one system and erased there: its key may then be destroyed."""
    sealed = SealedIdentities(alg="secretbox-xsalsa20poly1305", key_id=request_id, ciphertext="c2VjcmV0")
    ledger.record([
        ErasurePlanned(request_id=request_id, received_at=T0, due_at=T0 + timedelta(days=30),
                       subject_ref="sr_x", identities=sealed, planned_at=T0,
                       targets=[PlannedTarget(system="site-db", expected_turnaround_s=60)]),
        ErasureOutcome(request_id=request_id, system="site-db", attempt=1, status="erased", occurred_at=T0),
    ], T0)


def test_the_bulk_lookup_answers_as_the_single_one(ledger: Ledger) -> None:
    live = {str(uuid.uuid4()): new_data_key() for _ in range(3)}
    destroyed, unknown = str(uuid.uuid4()), str(uuid.uuid4())
    ledger.grant_data_keys({**live, destroyed: new_data_key()}, T0)
    finish(ledger, destroyed)
    assert ledger.destroy_data_keys(T0 + timedelta(days=2), grace_s=60) == 1
    ids = [*live, destroyed, unknown]

    bulk = ledger.keys.data_keys(ids)

    assert bulk == {rid: ledger.data_key(rid) for rid in ids}
    assert bulk == {**live, destroyed: None, unknown: None}  # unwrapped: the keys the router sealed with


def test_a_legacy_clear_key_is_read_as_the_single_lookup_reads_it(ledger: Ledger) -> None:
    """Ledgers written before wrapping hold clear keys (`erasure keys rewrap` wraps them later)."""
    clear, wrapped = str(uuid.uuid4()), str(uuid.uuid4())
    with ledger.writer.begin() as conn:
        conn.execute(data_keys_table.insert(),
                     [{"request_id": clear, "data_key": b"c" * 32, "created_at": T0}])
    ledger.grant_data_keys({wrapped: b"w" * 32}, T0)
    assert ledger.keys.data_keys([clear, wrapped]) == {clear: b"c" * 32, wrapped: b"w" * 32}
    assert ledger.keys.data_keys([clear, wrapped]) == {rid: ledger.data_key(rid) for rid in (clear, wrapped)}


def test_more_ids_than_one_query_takes_and_repeats_and_none(ledger: Ledger) -> None:
    granted = {str(uuid.uuid4()): new_data_key() for _ in range(2)}
    ledger.grant_data_keys(granted, T0)
    strangers = [str(uuid.uuid4()) for _ in range(KEYS_PER_QUERY + 10)]
    first, last = granted
    ids = [first, *strangers, first, last]  # the second key only in the second query's ids

    bulk = ledger.keys.data_keys(ids)

    assert bulk == {**dict.fromkeys(strangers), **granted}
    assert ledger.keys.data_keys([]) == {}
