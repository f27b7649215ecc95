"""End to end through the real broker, the pipeline's processes and a PostgreSQL ledger:

* a backup of the site database taken before Alma's and Boris's erasures is restored after them (Boris's
  data key already destroyed by housekeeping); `erasure replay` erases both again, Alma's held rows
  stay held, the ledger records it;
* `erasure sweep` over the site database: the dry run counts, the real run submits exactly those
  people, who are erased like anyone else; a second run submits nothing; the ledger (and so the desk)
  tells the sweep's requests apart.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from pipeline.devstack.demo import Person
from pipeline.streaming import topics
from tests.harness import RunningPipeline, read_topic, wait_until

pytestmark = pytest.mark.e2e

RUN = uuid.uuid4().hex[:8]
ALMA = Person(f"Alma Essai{RUN}", f"alma.{RUN}@example.test", "+33612000001", in_brevo=False, orders=2,
              card_added_days_ago=40, fraud_signal=True)
BORIS = Person(f"Boris Essai{RUN}", f"boris.{RUN}@example.test", "+33612000002")
DORA = Person(f"Dora Essai{RUN}", f"dora.{RUN}@example.test", "+33612000003")
LAPSED = [Person(f"Lapsed{n} Essai{RUN}", f"lapsed{n}.{RUN}@example.test", f"+3361200010{n}") for n in (1, 2)]
PEOPLE = [ALMA, BORIS, DORA, *LAPSED]
SWEEP = {"name": "dormant-accounts", "description": "accounts opened over a year ago and never used since",
         "table": "accounts", "identities": {"email": "email", "phone": "phone"},
         "older_than": {"column": "created_at", "period": "P1Y"}}


@pytest.fixture(scope="module")
def pipeline(kafka, postgres_url_module: str, tmp_path_factory: pytest.TempPathFactory,  # type: ignore[no-untyped-def]
             ) -> Iterator[RunningPipeline]:
    running = RunningPipeline(tmp_path_factory.mktemp("retention"), kafka.bootstrap, postgres_url_module,
                              PEOPLE, extra_env={"ERASURE_DATA_KEY_GRACE_S": "0"})
    register: dict[str, Any] = yaml.safe_load(running.systems_file.read_text())
    assert register["systems"][0]["id"] == "site-db" and register["systems"][0]["backup_retention"] == "P35D"
    register["systems"][0]["retention_sweeps"] = [SWEEP]
    running.systems_file.write_text(yaml.safe_dump(register))
    # Only the two lapsed people's accounts are over a year old.
    site = sa.create_engine(running.site_url)
    with site.begin() as conn:
        conn.execute(sa.text("UPDATE accounts SET created_at = :recent WHERE email NOT LIKE 'lapsed%'"),
                     {"recent": datetime.now(UTC).replace(tzinfo=None) - timedelta(days=30)})
    site.dispose()
    running.start()
    yield running
    running.stop()


def erasure(pipeline: RunningPipeline, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "pipeline.cli", *args], env={**os.environ, **pipeline.env},
                          capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    return done.stdout


def site_rows(pipeline: RunningPipeline, query: str, **params: Any) -> list[tuple[Any, ...]]:
    engine = sa.create_engine(pipeline.site_url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(query), params)]
    finally:
        engine.dispose()


def copy_sqlite(source: str, target: str) -> None:
    """The database's own online backup: safe while the connector holds the file open."""
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)


def test_a_backup_restored_after_erasures_is_erased_again(pipeline: RunningPipeline, tmp_path: Path) -> None:
    live = pipeline.site_url.removeprefix("sqlite:///")
    backup = str(tmp_path / "site-backup.db")
    backup_taken = datetime.now(UTC)
    copy_sqlite(live, backup)
    alma, boris = pipeline.submit(ALMA.email), pipeline.submit(BORIS.email)
    assert pipeline.wait_final(alma).status == "completed_with_holds"
    assert pipeline.wait_final(boris).status == "completed"
    wait_until(lambda: any(e.kind == "data_key_destroyed" for e in pipeline.ledger.events(boris)), 30,
               "housekeeping to destroy Boris's data key")
    with pipeline.ledger.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT data_key FROM erasure_data_keys WHERE request_id = :r"),
                            {"r": boris}).scalar() is None, "Boris's identities can no longer be opened"
    orders = site_rows(pipeline, "SELECT o.id, o.retain_until FROM orders o WHERE o.account_id IN "
                                 "(SELECT id FROM accounts WHERE full_name IS NULL) ORDER BY o.id")
    assert len(orders) == ALMA.orders and all(until is not None for _, until in orders)

    copy_sqlite(backup, live)  # the restore
    assert site_rows(pipeline, "SELECT COUNT(*) FROM accounts WHERE email IN (:a, :b)",
                     a=ALMA.email, b=BORIS.email) == [(2,)]
    out = erasure(pipeline, "replay", "--system", "site-db", "--since", backup_taken.isoformat())

    assert "2 people erased since" in out and "2 found again in the store" in out
    assert f"{alma}: held" in out and f"{boris}: erased" in out
    assert ALMA.email not in out and BORIS.email not in out
    assert site_rows(pipeline, "SELECT COUNT(*) FROM accounts WHERE email IN (:a, :b) OR "
                               "full_name IN (:n, :m)", a=ALMA.email, b=BORIS.email, n=ALMA.name,
                     m=BORIS.name) == [(0,)]
    assert site_rows(pipeline, "SELECT o.id, o.retain_until FROM orders o WHERE o.account_id IN "
                               "(SELECT id FROM accounts WHERE full_name IS NULL) ORDER BY o.id") == orders
    assert sorted(c for (c,) in site_rows(
        pipeline, "SELECT data_category FROM erasure_restricted_archive WHERE request_id = :r", r=alma)) == [
        "fraud_signals", "invoices", "invoices"]
    assert site_rows(pipeline, "SELECT COUNT(*) FROM accounts WHERE email = :d", d=DORA.email) == [(1,)]
    for rid, status in ((alma, "held"), (boris, "erased")):
        assert [(e.system, e.status) for e in pipeline.ledger.events(rid) if e.kind == "replayed"] == [
            ("site-db", status)]
    assert pipeline.ledger.verify_chain() is None


def test_a_sweep_counts_submits_those_people_once_and_is_told_apart(pipeline: RunningPipeline) -> None:
    dry = erasure(pipeline, "sweep", "--dry-run")
    assert "site-db dormant-accounts" in dry and "2 people, 0 submitted before, 2 to submit" in dry
    before = {v.request_id for v in pipeline.ledger.list_requests(datetime.now(UTC))}

    real = erasure(pipeline, "sweep", "--rate-per-s", "5")
    assert "2 to submit" in real and "submitting" in real and "submitted 2 request(s)" in real

    def new_requests() -> set[str] | None:
        ids = {v.request_id for v in pipeline.ledger.list_requests(datetime.now(UTC))} - before
        return ids if len(ids) == 2 else None

    swept: set[str] = wait_until(new_requests, 60, "the sweep's two requests")
    for rid in swept:
        view = pipeline.wait_final(rid)
        assert (view.status, view.channel, view.verification) == ("completed", "retention", "not_applicable")
        assert {s.system: s.status for s in view.systems} == {"site-db": "erased", "brevo": "erased"}
    for person in LAPSED:
        assert site_rows(pipeline, "SELECT COUNT(*) FROM accounts WHERE email = :e", e=person.email) == [(0,)]
        assert not pipeline.brevo.has_contact(person.email)
    assert site_rows(pipeline, "SELECT COUNT(*) FROM accounts WHERE email = :d", d=DORA.email) == [(1,)]

    published = len([r for r in read_topic(pipeline.bootstrap, topics.REQUESTS) if r.key.decode() in swept])
    again = erasure(pipeline, "sweep")
    assert "0 people" in again and "nothing to submit" in again
    assert len([r for r in read_topic(pipeline.bootstrap, topics.REQUESTS)
                if r.key.decode() in swept]) == published == 2
    now = datetime.now(UTC)
    assert {v.request_id for v in pipeline.ledger.list_requests(now, channel="retention")} == swept
    assert not swept & {v.request_id for v in pipeline.ledger.list_requests(now, channel="people")}
