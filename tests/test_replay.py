"""Erase again after a restore, over real SQLite and PostgreSQL site databases: a backup taken before
Alice's and Bruno's erasures is restored after them; `replay` finds them by the ledger's identity
digests (Bruno's data key already destroyed), erases them again (Alice's held rows stay held, until the
same dates), records it in their requests' chains, and leaves everyone else alone."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from connectors.base import TaskContext
from connectors.retention import RetentionPolicy
from connectors.stores.sql_store import ARCHIVE_TABLE, SqlStoreConnector, SqlStoreSettings
from pipeline.crypto import PipelineKeys, init_keys, load_keys, open_with_data_key, seal_for_intake
from pipeline.devstack.demo import DEMO_PEOPLE, demo_systems, seed_site_database
from pipeline.keywrap import AesGcmKeyWrapper
from pipeline.ledger import Ledger, open_ledger
from pipeline.policy import load_policy
from pipeline.register import SystemsRegister
from pipeline.replay import replay
from pipeline.streaming import topics
from pipeline.streaming.router import Router
from schemas import (
    ErasureOutcome,
    ErasurePlanned,
    ErasureRequested,
    ErasureTask,
    Identity,
    Scope,
    SubjectIdentities,
)
from tests.conftest import PG_ADMIN_URL
from tests.fakes.publisher import MemoryPublisher
from tests.fakes.signers import TestSigners

SIGNERS = TestSigners()  # the router checks who sent each request

ALICE, BRUNO, CHLOE, DAVID = DEMO_PEOPLE


class Backups:
    """A backup of the site database and its restore, as the database's own tools would do them."""

    def __init__(self, url: str, tmp_path: Path) -> None:
        self.url = make_url(url)
        self.copy = tmp_path / "backup.db"
        self.copy_name = f"{self.url.database}_backup"

    def take(self) -> None:
        if self.url.get_backend_name() == "sqlite":
            with sqlite3.connect(str(self.url.database)) as live, sqlite3.connect(self.copy) as copy:
                live.backup(copy)
        else:
            self._admin(f'CREATE DATABASE "{self.copy_name}" TEMPLATE "{self.url.database}"')

    def restore(self) -> None:
        if self.url.get_backend_name() == "sqlite":
            with sqlite3.connect(self.copy) as copy, sqlite3.connect(str(self.url.database)) as live:
                copy.backup(live)
        else:
            self._admin(f'DROP DATABASE "{self.url.database}" WITH (FORCE)')
            self._admin(f'CREATE DATABASE "{self.url.database}" TEMPLATE "{self.copy_name}"')

    def drop(self) -> None:
        if self.url.get_backend_name() != "sqlite":
            self._admin(f'DROP DATABASE IF EXISTS "{self.copy_name}" WITH (FORCE)')

    @staticmethod
    def _admin(statement: str) -> None:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(statement)  # type: ignore[arg-type]


class Site:
    """The demo's site database with the pipeline's parts run in process: router, connector, ledger."""

    def __init__(self, url: str, tmp_path: Path) -> None:
        self.url = url
        seed_site_database(url)
        init_keys(tmp_path / "keys")
        self.keys: PipelineKeys = load_keys(tmp_path / "keys", need_private=True)
        assert self.keys.subject_ref_hmac is not None
        self.hmac_key = self.keys.subject_ref_hmac
        self.register = SystemsRegister.model_validate(demo_systems(url, "http://127.0.0.1:1"))
        self.policy: RetentionPolicy = load_policy(None)[0]
        self.ledger: Ledger = open_ledger(f"sqlite:///{tmp_path / 'ledger.db'}", AesGcmKeyWrapper.generate())
        self.backups = Backups(url, tmp_path)
        self.received: dict[str, datetime] = {}

    def connector(self, **options: Any) -> SqlStoreConnector:
        settings = self.register.get("site-db").connector_settings()
        assert isinstance(settings, SqlStoreSettings)
        return SqlStoreConnector("site-db", settings, **options)

    def erase(self, email: str) -> str:
        """Route a request for the site database, erase as its worker would, record the outcome."""
        rid, now = str(uuid.uuid4()), datetime.now(UTC)
        self.received[rid] = now
        request = ErasureRequested(request_id=rid, received_at=now, scope=Scope(systems=["site-db"]),
                                   identities=seal_for_intake(self.keys.intake_public, subject(email)))
        publisher = MemoryPublisher()
        asyncio.run(Router(self.register, self.keys, self.ledger, publisher, SIGNERS.verifier()).route(
            [SIGNERS.received(topics.REQUESTS, 0, rid.encode(), request)]))
        [plan] = [ErasurePlanned.model_validate_json(m.value) for m in publisher.sent
                  if m.topic == topics.OUTCOMES]
        [task] = [ErasureTask.model_validate_json(m.value) for m in publisher.sent
                  if m.topic == topics.task_topic("site-db")]
        self.ledger.record([plan], now)
        key = self.ledger.data_key(rid)
        assert key is not None
        connector = self.connector()
        try:
            result = connector.erase(open_with_data_key(key, task.identities), TaskContext(
                request_id=rid, system="site-db", attempt=1, received_at=now, retention=self.policy))
        finally:
            connector.close()
        self.ledger.record([ErasureOutcome(request_id=rid, system="site-db", attempt=1, status=result.status,
                                           holds=result.holds, evidence=result.evidence, occurred_at=now)],
                           datetime.now(UTC))
        return rid

    def replay(self, since: datetime, **options: Any) -> Any:
        connector = self.connector()
        try:
            return replay(connector, self.ledger, self.hmac_key, self.policy, since, datetime.now(UTC),
                          uuid.uuid4().hex, **options)
        finally:
            connector.close()

    def rows(self, query: str, **params: Any) -> list[tuple[Any, ...]]:
        engine = sa.create_engine(self.url)
        try:
            with engine.connect() as conn:
                return [tuple(r) for r in conn.execute(sa.text(query), params)]
        finally:
            engine.dispose()

    def account(self, person_name: str) -> tuple[Any, ...] | None:
        found = self.rows("SELECT id, email, phone FROM accounts WHERE full_name = :n", n=person_name)
        return found[0] if found else None


def subject(email: str) -> SubjectIdentities:
    return SubjectIdentities(identities=[Identity(identity_type="email", identity_value=email)])


@pytest.fixture(params=["sqlite", "postgres"])
def site(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Site]:
    built = Site(request.getfixturevalue(f"{request.param}_url"), tmp_path)
    yield built
    built.ledger.close()
    built.backups.drop()


def test_a_restored_store_is_erased_again_holds_kept_key_destroyed_or_not(site: Site) -> None:
    alice_id = site.account(ALICE.name)
    assert alice_id is not None
    backup_taken = datetime.now(UTC)
    site.backups.take()
    alice, bruno = site.erase(ALICE.email), site.erase(BRUNO.email)
    assert site.ledger.request(alice, datetime.now(UTC)).status == "completed_with_holds"  # type: ignore[union-attr]
    assert site.ledger.destroy_data_keys(datetime.now(UTC) + timedelta(seconds=1), grace_s=0) == 1
    assert site.ledger.data_key(bruno) is None, "Bruno's identities can no longer be opened"
    held_orders = site.rows("SELECT id, retain_until FROM orders WHERE account_id = :a", a=alice_id[0])
    archived = site.rows(f"SELECT source_table, data_category, retain_until FROM {ARCHIVE_TABLE} "
                         "WHERE request_id = :r ORDER BY source_table", r=alice)

    site.backups.restore()
    assert site.account(ALICE.name) is not None and site.account(BRUNO.name) is not None
    report = site.replay(backup_taken)

    assert report.erased_people == 2 and set(report.found) == {alice, bruno}
    statuses = {r.request_id: r.status for r in report.records}
    assert statuses == {alice: "held", bruno: "erased"}
    # Alice: erased again except what the law keeps, kept until the same dates.
    assert site.rows("SELECT email, phone, full_name FROM accounts WHERE id = :a", a=alice_id[0]) == [
        (None, None, None)]
    assert site.rows("SELECT COUNT(*) FROM profiles WHERE account_id = :a", a=alice_id[0]) == [(0,)]
    assert site.rows("SELECT COUNT(*) FROM newsletter_consents WHERE email = :e", e=ALICE.email) == [(0,)]
    assert site.rows("SELECT id, retain_until FROM orders WHERE account_id = :a",
                     a=alice_id[0]) == held_orders
    assert site.rows(f"SELECT source_table, data_category, retain_until FROM {ARCHIVE_TABLE} "
                     "WHERE request_id = :r ORDER BY source_table", r=alice) == archived
    assert site.account(BRUNO.name) is None
    assert site.rows("SELECT COUNT(*) FROM newsletter_consents WHERE email = :e", e=BRUNO.email) == [(0,)]
    assert site.account(DAVID.name) is not None, "nobody else is touched"
    assert site.rows("SELECT COUNT(*) FROM newsletter_consents WHERE email = :e", e=DAVID.email) == [(1,)]
    # The ledger records each replay in the person's own history.
    for rid, status in ((alice, "held"), (bruno, "erased")):
        [event] = [e for e in site.ledger.events(rid) if e.kind == "replayed"]
        assert (event.system, event.status) == ("site-db", status)
        assert backup_taken.isoformat() in event.payload
    assert site.ledger.verify_chain() is None
    for event in site.ledger.events():
        assert ALICE.email not in event.payload and BRUNO.email not in event.payload


def test_a_backup_taken_after_the_erasures_brings_nobody_back(site: Site) -> None:
    site.erase(BRUNO.email)
    taken = datetime.now(UTC)
    site.backups.take()
    site.backups.restore()
    report = site.replay(taken)
    assert (report.erased_people, report.found, report.records) == (0, {}, [])
    assert site.account(DAVID.name) is not None


def test_a_dry_run_finds_without_erasing(site: Site) -> None:
    taken = datetime.now(UTC)
    site.backups.take()
    bruno = site.erase(BRUNO.email)
    site.backups.restore()
    report = site.replay(taken, dry_run=True)
    assert set(report.found) == {bruno} and report.records == []
    assert site.account(BRUNO.name) is not None
    assert not [e for e in site.ledger.events(bruno) if e.kind == "replayed"]


def test_digests_are_forgotten_when_the_backups_that_may_hold_the_person_have_expired(site: Site) -> None:
    alice, bruno = site.erase(ALICE.email), site.erase(BRUNO.email)
    assert site.ledger.digests.count(alice) == 1 and site.ledger.digests.count(bruno) == 1
    now = datetime.now(UTC)
    assert site.ledger.digests.forget_expired(now + timedelta(days=34), force=True) == 0
    assert site.ledger.digests.forget_expired(now + timedelta(days=36), force=True) == 1
    assert site.ledger.digests.count(bruno) == 0, "35 days after Bruno's erasure, no backup holds him"
    assert site.ledger.digests.count(alice) == 1, "Alice's held rows are still in the store and its backups"


def test_held_rows_whose_retention_ended_are_purged_and_only_those(site: Site) -> None:
    """A restore brings back held rows released since the backup: past their own end, they go."""
    alice_id = site.account(ALICE.name)
    assert alice_id is not None
    alice = site.erase(ALICE.email)
    ends = {category: until for category, until in site.rows(
        f"SELECT data_category, retain_until FROM {ARCHIVE_TABLE} WHERE request_id = :r", r=alice)}
    fraud_until = datetime.fromisoformat(str(ends["fraud_signals"])).replace(tzinfo=UTC)
    # A day after the fraud signals' year: they and the card (13 months from its debit, 40 days
    # ago) are past their end; invoices (10 years) and orders (10 years) are not.
    connector = site.connector(clock=lambda: fraud_until + timedelta(days=1))
    try:
        assert connector.purge_ended_holds() == 2
    finally:
        connector.close()
    assert sorted(c for (c,) in site.rows(f"SELECT data_category FROM {ARCHIVE_TABLE}")) == [
        "invoices"] * ALICE.orders
    assert site.rows("SELECT COUNT(*) FROM payment_tokens WHERE account_id = :a", a=alice_id[0]) == [(0,)]
    assert site.rows("SELECT COUNT(*) FROM orders WHERE account_id = :a", a=alice_id[0]) == [(ALICE.orders,)]


def test_the_router_keeps_digests_only_for_systems_whose_backups_are_kept(tmp_path: Path) -> None:
    from pipeline.ledger.digests import identity_digest, identity_digests_table

    site = Site(f"sqlite:///{tmp_path / 'site.db'}", tmp_path)
    try:
        identities = [Identity(identity_type="email", identity_value=" Ada.Lovelace@Example.org"),
                      Identity(identity_type="phone", identity_value="+33 6 00 00 00 09")]
        rid, now = str(uuid.uuid4()), datetime.now(UTC)
        request = ErasureRequested(request_id=rid, received_at=now, identities=seal_for_intake(
            site.keys.intake_public, SubjectIdentities(identities=identities)))
        record = SIGNERS.received(topics.REQUESTS, 0, rid.encode(), request)
        for _ in range(2):  # a duplicate changes nothing
            asyncio.run(Router(site.register, site.keys, site.ledger, MemoryPublisher(),
                               SIGNERS.verifier()).route([record]))
        with site.ledger.engine.connect() as conn:
            rows = conn.execute(sa.select(identity_digests_table)).all()
        # brevo declares no backup_retention; the site database keeps its backups 35 days.
        assert sorted((r.system, r.digest, r.backup_retention) for r in rows) == sorted(
            ("site-db", identity_digest(site.hmac_key, i), "P35D") for i in identities)
        # Normalised: another spelling of the same address is the same person.
        assert identity_digest(site.hmac_key, Identity(
            identity_type="email", identity_value="ada.lovelace@example.org")) in {r.digest for r in rows}
        assert all(len(r.digest) == 64 and "@" not in r.digest for r in rows)
    finally:
        site.ledger.close()
