"""Scaled out by processes: two faust workers and two processes per connector lane share the partitions.

The real pipeline (`LocalPipeline`: `erasure worker` twice, `erasure connector site-db` and
`erasure connector brevo` twice each, every connector a member of its lane's consumer group),
on the embedded broker, with the ledger on PostgreSQL (concurrent writers) and the site's
database on PostgreSQL too. Every request must complete exactly once: one plan, one completion,
one final outcome per system in the ledger's events, and the hash chain verifies; with one worker
SIGKILLed mid-run, the survivor takes over its partitions and the same holds.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from kafka.partitioner.default import murmur2

from bench import fault_checks
from pipeline.devstack.broker import Broker, find_or_start
from pipeline.devstack.demo import Person
from pipeline.devstack.local import OWN_PROCESS_SYSTEMS, LocalPipeline
from pipeline.devstack.probes import wait_until
from pipeline.ledger import open_ledger
from tests.conftest import _postgres_database
from tests.harness import wait_all_final

pytestmark = pytest.mark.e2e

RUN = uuid.uuid4().hex[:8]
PARTITIONS = 4  # LocalPipeline creates every topic with 4
PEOPLE = [Person(f"Scale Essai{RUN} {i}", f"scale.{RUN}.{i}@example.test", f"+3363{i:07d}",
                 in_brevo=i % 2 == 0, in_site=i % 3 != 0) for i in range(40)]


@pytest.fixture
def site_url() -> Iterator[str]:
    yield from _postgres_database()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A broker of the test's own on Tansu: its consumer groups start empty. A group whose members
    left uncleanly (two tests in a row on the session's broker) accepted no member for minutes."""
    broker = find_or_start(os.environ.get("KAFKA_BOOTSTRAP_SERVERS"), tmp_path / "broker")
    yield broker
    broker.stop()


@pytest.fixture
def scaled(broker: Broker, tmp_path: Path, postgres_url: str, site_url: str) -> Iterator[LocalPipeline]:
    pipeline = LocalPipeline(tmp_path, broker.bootstrap, postgres_url, PEOPLE, site_url=site_url,
                             workers=2, processes_per_lane=2)
    try:
        yield pipeline.start()
    finally:
        pipeline.stop()


def partition_of(request_id: str) -> int:
    """The partition of every topic that carries this request (keyed by request id, Kafka's partitioner)."""
    return (murmur2(request_id.encode()) & 0x7FFFFFFF) % PARTITIONS


def publish(pipeline: LocalPipeline, people: list[Person], interval_s: float) -> list[str]:
    published = []
    for person in people:
        published.append(pipeline.intake.submit({"email": person.email}, datetime.now(UTC)))
        time.sleep(interval_s)
    return published


def assert_each_once(pipeline: LocalPipeline, published: list[str]) -> None:
    checks = [fault_checks.final_states(pipeline.database_url, published),
              fault_checks.exactly_once(pipeline.database_url, published),
              fault_checks.chain(pipeline.database_url)]
    failed = [f"{c.name}: {c.detail} {c.figures}" for c in checks if not c.passed]
    assert not failed, failed
    ledger = open_ledger(pipeline.database_url)
    try:
        for rid in published:
            view = ledger.request(rid, datetime.now(UTC))
            assert view is not None and {s.system for s in view.systems} == set(pipeline.system_ids)
    finally:
        ledger.close()


def completions_logged(pipeline: LocalPipeline, name: str, after: int = 0) -> set[str]:
    """The requests whose completion this worker's aggregator announced (from its log)."""
    text = pipeline.log_path(name).read_text(errors="replace")[after:]
    return {request_id for line in text.splitlines() if " request(s) final (" in line
            for request_id in line.split("late): ", 1)[1].split()}


def outcomes_logged(pipeline: LocalPipeline, name: str) -> int:
    return pipeline.log_path(name).read_text(errors="replace").count(" -> ")


@pytest.mark.timeout(600)
def test_two_workers_and_two_processes_per_lane_complete_every_request_once(scaled: LocalPipeline) -> None:
    published = publish(scaled, PEOPLE, 0.1)
    ledger = open_ledger(scaled.database_url)
    try:
        wait_all_final(ledger, published, 240)
    finally:
        ledger.close()
    assert_each_once(scaled, published)
    assert len({partition_of(rid) for rid in published}) == PARTITIONS
    # The work was shared: each worker announced completions, each process of a lane erased.
    for name in scaled.worker_names:
        assert completions_logged(scaled, name), f"{name} completed nothing"
    for system in OWN_PROCESS_SYSTEMS:
        for name in scaled.lane_names(system):
            assert outcomes_logged(scaled, name) > 0, f"{name} reported no outcome"
    for name, process in scaled.processes.items():
        assert process.poll() is None, f"{name} exited"


@pytest.mark.timeout(600)
def test_a_killed_worker_s_partitions_are_taken_over_and_nothing_is_done_twice(scaled: LocalPipeline) -> None:
    before, after = PEOPLE[:20], PEOPLE[20:]
    published: list[str] = []

    def publish_all() -> None:
        published.extend(publish(scaled, before, 0.2))
        published.extend(publish(scaled, after, 0.2))

    publisher = threading.Thread(target=publish_all)
    publisher.start()
    wait_until(lambda: len(published) >= 10, 60, "the first requests to be published")
    victim, survivor = scaled.worker_names[1], scaled.worker_names[0]
    wait_until(lambda: completions_logged(scaled, victim), 120, f"{victim} to complete a request")
    survivor_log_at = scaled.supervisor.log_size(survivor)
    scaled.kill(victim)  # SIGKILL, mid-run: requests keep coming
    killed_at = len(published)
    publisher.join()
    ledger = open_ledger(scaled.database_url)
    try:
        wait_all_final(ledger, published, 300)
    finally:
        ledger.close()
    assert_each_once(scaled, published)
    # After the kill the survivor completed requests on every partition, the victim's included.
    taken_over = completions_logged(scaled, survivor, after=survivor_log_at)
    late = [rid for rid in published[killed_at:] if rid in taken_over]
    partitions = sorted({partition_of(rid) for rid in late})
    assert partitions == list(range(PARTITIONS)), f"after the kill {survivor} completed on {partitions}"
    for name, process in scaled.processes.items():
        if name != victim:
            assert process.poll() is None, f"{name} exited"


def lock_waiters(engine: sa.Engine) -> int:
    """How many of the ledger's connections wait for a lock."""
    with engine.connect() as conn:
        return int(conn.execute(sa.text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock'")).scalar_one())


@pytest.mark.timeout(600)
def test_a_worker_killed_while_its_batch_waits_on_the_ledger_loses_none_of_it(
        broker: Broker, tmp_path: Path, postgres_url: str, site_url: str) -> None:
    """The batch a worker had taken and not yet written is the survivor's to write.

    Connectors start once every plan is in the ledger; their outcomes then find the ledger's
    system rows locked (an officer's long query, a slow disk: any write that takes a while), so
    both aggregators sit in the middle of a batch (housekeeping is kept out of the way: nothing
    else writes). One worker is SIGKILLed; the lock goes; the survivor takes over its partitions
    and reads the batch again. (When the worker kept a faust table, which was sent to its
    changelog before the ledger write, the survivor dropped the batch as duplicates, and later
    re-drives too: those requests stayed in progress.)
    """
    pipeline = LocalPipeline(tmp_path, broker.bootstrap, postgres_url, PEOPLE, site_url=site_url,
                             workers=2, processes_per_lane=2,
                             extra_env={"ERASURE_REDRIVE_CHECK_INTERVAL_S": "3600"})
    ledger = open_ledger(postgres_url)
    engine = sa.create_engine(postgres_url)
    try:
        for name in pipeline.worker_names:
            pipeline.spawn(name, "worker")
        for name in pipeline.worker_names:
            pipeline.wait_log(name, "Worker]: Ready")
        published = publish(pipeline, PEOPLE[:12], 0.05)
        wait_until(lambda: all(ledger.request(rid, datetime.now(UTC)) for rid in published), 120,
                   "every plan in the ledger")
        with engine.connect() as lock:
            lock.exec_driver_sql("LOCK TABLE erasure_system_outcomes IN SHARE MODE")
            for system in OWN_PROCESS_SYSTEMS:
                for name in pipeline.lane_names(system):
                    pipeline.spawn(name, "connector", system)
            # Each aggregator's write waits: one for the system rows, the other for the chain.
            wait_until(lambda: lock_waiters(engine) >= len(pipeline.worker_names), 120,
                       "both aggregators in the middle of a batch")
            pipeline.kill(pipeline.worker_names[1])
            lock.rollback()
        wait_all_final(ledger, published, 180)
        assert_each_once(pipeline, published)
    finally:
        engine.dispose()
        ledger.close()
        pipeline.stop()
