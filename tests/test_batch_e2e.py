"""A burst of requests through the real pipeline: the site database's lane erases them in batches.

The real pipeline (`LocalPipeline`) on the embedded broker: every request is published at once,
so the site-db lane reads many tasks per poll and erases them in batches (each person twice,
often in the same batch). Every request must complete exactly once, with one final site-db
outcome each, and nobody's identities may remain in the site's accounts.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from bench import fault_checks
from pipeline.devstack.broker import Broker, find_or_start
from pipeline.devstack.demo import Person
from pipeline.devstack.local import LocalPipeline
from pipeline.ledger import events_table, open_ledger
from schemas import FINAL_SYSTEM_STATUSES
from tests.harness import wait_all_final

pytestmark = pytest.mark.e2e

RUN = uuid.uuid4().hex[:8]
PEOPLE = [Person(f"Lot Essai{RUN} {i}", f"batch.{RUN}.{i}@example.test", f"+3364{i:07d}",
                 in_brevo=i % 2 == 0, orders=i % 3, card_added_days_ago=30 if i % 4 == 0 else None,
                 fraud_signal=i % 5 == 0) for i in range(30)]


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    broker = find_or_start(os.environ.get("KAFKA_BOOTSTRAP_SERVERS"), tmp_path / "broker")
    yield broker
    broker.stop()


@pytest.fixture
def running(broker: Broker, tmp_path: Path) -> Iterator[LocalPipeline]:
    pipeline = LocalPipeline(tmp_path, broker.bootstrap, f"sqlite:///{tmp_path / 'ledger.db'}", PEOPLE)
    try:
        yield pipeline.start()
    finally:
        pipeline.stop()


def burst(pipeline: LocalPipeline, people: list[Person]) -> list[str]:
    published = []
    for person in people:
        event = pipeline.intake.build({"email": person.email}, datetime.now(UTC))
        pipeline.intake.send(event)  # signed, without waiting for each acknowledgement
        published.append(event.request_id)
    pipeline.intake.producer.flush()
    return published


@pytest.mark.timeout(600)
def test_a_burst_to_the_site_db_lane_completes_each_request_exactly_once(running: LocalPipeline) -> None:
    published = burst(running, PEOPLE + PEOPLE)  # each person twice
    ledger = open_ledger(running.database_url)
    try:
        wait_all_final(ledger, published, 300)
    finally:
        ledger.close()
    checks = [fault_checks.final_states(running.database_url, published),
              fault_checks.exactly_once(running.database_url, published),
              fault_checks.chain(running.database_url)]
    assert not [f"{c.name}: {c.detail} {c.figures}" for c in checks if not c.passed]
    engine = sa.create_engine(running.database_url)
    with engine.connect() as conn:
        site_finals = conn.execute(sa.select(events_table.c.request_id).where(
            events_table.c.system == "site-db", events_table.c.kind == "outcome",
            events_table.c.status.in_(FINAL_SYSTEM_STATUSES))).scalars().all()
    engine.dispose()
    assert sorted(site_finals) == sorted(published)  # one final site-db outcome per request
    site = sa.create_engine(running.site_url)
    with site.connect() as conn:
        left = conn.execute(sa.text("SELECT count(*) FROM accounts WHERE email LIKE :p OR phone LIKE :q"),
                            {"p": f"batch.{RUN}.%", "q": "+3364%"}).scalar()
    site.dispose()
    assert left == 0
    log = running.log_path("connector-site-db").read_text(errors="replace")
    sizes = [int(line.split("a batch of ", 1)[1].split()[0]) for line in log.splitlines()
             if "a batch of " in line]
    assert sizes and max(sizes) > 1 and sum(sizes) >= len(published)
