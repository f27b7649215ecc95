"""`erasure sweep` reads its store a chunk at a time: thousands of covered rows, read 70 at a time
from SQLite and PostgreSQL and submitted through a real broker, each person exactly once; the
counts are exact; a second run submits nobody; a person's rows in different chunks are one person."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from pydantic import ValidationError

from pipeline.crypto import PipelineKeys, init_keys, load_keys, open_intake
from pipeline.devstack.broker import Broker
from pipeline.devstack.probes import read_topic
from pipeline.intake import IntakeClient
from pipeline.kafka_clients import ensure_topics
from pipeline.ledger import Ledger, open_ledger
from pipeline.register import SystemsRegister
from pipeline.signing import SWEEP
from pipeline.streaming import topics
from pipeline.sweep.plan import RulePlan
from pipeline.sweep.run import plan_sweeps
from pipeline.sweep.submit import SweepSubmitter
from schemas import ErasureRequested
from tests.fakes.signers import TestSigners

NOW = datetime.now(UTC).replace(microsecond=0)
ROWS = 5_000
CHUNK = 70
SPLIT_IDS = range(7, ROWS, 1_000)  # one person's five rows, in five different chunks
UNUSABLE_IDS = set(range(3, ROWS, 250))  # covered, but no identity anyone could erase by
PEOPLE = ROWS - len(SPLIT_IDS) - len(UNUSABLE_IDS) + 1
members = sa.Table(
    "members", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("email", sa.String(254)), sa.Column("phone", sa.String(40)),
    sa.Column("status", sa.String(20), nullable=False), sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("last_login_at", sa.DateTime))
RULE = {"name": "inactive-members", "description": "members without login for 3 years",
        "table": "members", "identities": {"email": "email", "phone": "phone"},
        "older_than": {"column": "last_login_at", "fallback_column": "created_at", "period": "P3Y"},
        "where": {"status": "active"}}


def email_of(row_id: int, run: str) -> str:
    if row_id in UNUSABLE_IDS:
        return "not an e-mail"
    return f"split.{run}@example.test" if row_id in SPLIT_IDS else f"member{row_id}.{run}@example.test"


def seed(url: str, run: str) -> None:
    engine = sa.create_engine(url)
    members.metadata.create_all(engine)
    lapsed = NOW.replace(tzinfo=None) - timedelta(days=1500)
    with engine.begin() as conn:
        conn.execute(members.insert(), [
            {"id": n, "email": email_of(n, run), "phone": None if n in UNUSABLE_IDS else f"+3361{n:07d}",
             "status": "active",
             "created_at": lapsed - timedelta(days=30), "last_login_at": lapsed + timedelta(minutes=n)}
            for n in range(1, ROWS + 1)])
        # not covered: recent, staff
        conn.execute(members.insert(), [
            {"id": ROWS + 1, "email": f"recent.{run}@example.test", "phone": None, "status": "active",
             "created_at": lapsed, "last_login_at": NOW.replace(tzinfo=None) - timedelta(days=3)},
            {"id": ROWS + 2, "email": f"staff.{run}@example.test", "phone": None, "status": "staff",
             "created_at": lapsed, "last_login_at": lapsed}])
    engine.dispose()


@dataclass
class Site:
    url: str
    run: str
    register: SystemsRegister
    keys: PipelineKeys
    ledger: Ledger
    bootstrap: str


@pytest.fixture(params=["sqlite", "postgres"])
def site(request: pytest.FixtureRequest, tmp_path: Path, kafka: Broker) -> Iterator[Site]:
    url = f"sqlite:///{tmp_path / 'site.db'}" if request.param == "sqlite" else request.getfixturevalue(
        "postgres_url")
    run = uuid.uuid4().hex[:8]
    seed(url, run)
    ensure_topics(kafka.bootstrap, [topics.REQUESTS], 4)
    init_keys(tmp_path / "keys")
    register = SystemsRegister.model_validate({"systems": [
        {"id": "site-db", "kind": "internal", "location": "France", "data_categories": ["account"],
         "connector": {"type": "sql", "url": url, "tables": [
             {"table": "members", "match": {"email": "email", "phone": "phone"}, "action": "delete"}]},
         "retention_sweeps": [RULE]}]})
    ledger = open_ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    try:
        keys = load_keys(tmp_path / "keys", need_private=True)
        yield Site(url, run, register, keys, ledger, kafka.bootstrap)
    finally:
        ledger.close()


def plan(site: Site) -> RulePlan:
    [only] = plan_sweeps(site.register, b"k" * 32, site.ledger.sweeps, NOW, chunk_rows=CHUNK)
    return only


def submit(site: Site, rule_plan: RulePlan) -> int:
    with IntakeClient(site.bootstrap, site.keys.intake_public, TestSigners().signer(SWEEP)) as client:
        return SweepSubmitter(client, site.ledger.sweeps, rate_per_s=1_000_000).submit(rule_plan)


def on_the_topic(site: Site) -> Counter[str]:
    """How many times each e-mail of this run went out on the requests topic."""
    assert site.keys.intake_private is not None
    sent: Counter[str] = Counter()
    for record in read_topic(site.bootstrap, topics.REQUESTS):
        try:
            event = ErasureRequested.model_validate_json(record.value)
        except ValidationError:  # another test's malformed request (the router dead-letters those)
            continue
        if event.channel != "retention":
            continue
        try:
            opened = open_intake(site.keys.intake_private, event.identities)
        except Exception:  # another test's keys
            continue
        sent.update(i.identity_value for i in opened.identities
                    if i.identity_type == "email" and site.run in i.identity_value)
    return sent


def test_every_covered_person_is_submitted_exactly_once_reading_70_rows_at_a_time(site: Site) -> None:
    first = plan(site)
    assert (len(first.people), len(first.already_submitted), len(first.to_submit), first.unusable_rows) == (
        PEOPLE, 0, PEOPLE, len(UNUSABLE_IDS))

    assert submit(site, first) == PEOPLE
    sent = on_the_topic(site)
    expected = {email_of(n, site.run) for n in range(1, ROWS + 1) if n not in UNUSABLE_IDS}
    assert set(sent) == expected and set(sent.values()) == {1}, "each person exactly once, nobody else"

    again = plan(site)
    assert (len(again.people), len(again.already_submitted), len(again.to_submit)) == (PEOPLE, PEOPLE, 0)
    assert submit(site, again) == 0
    assert set(on_the_topic(site).values()) == {1}, "a second run submits nobody"


def test_a_persons_rows_in_different_chunks_make_one_request_with_all_their_identities(site: Site) -> None:
    split = f"split.{site.run}@example.test"
    people = [p for p in plan(site).people if any(i.identity_value == split for i in p.subject.identities)]
    assert len(people) == 1
    assert {i.identity_value for i in people[0].subject.identities if i.identity_type == "phone"} == {
        f"+3361{n:07d}" for n in SPLIT_IDS}


def test_rows_gone_between_the_count_and_the_submission_are_not_submitted(site: Site) -> None:
    counted = plan(site)
    engine = sa.create_engine(site.url)
    with engine.begin() as conn:  # erased meanwhile (say, by a person's own request), one chunk's worth
        conn.execute(members.delete().where(members.c.id.between(100, 100 + CHUNK - 1)))
    engine.dispose()
    gone = {email_of(n, site.run) for n in range(100, 100 + CHUNK)} - {"not an e-mail"}

    assert submit(site, counted) == PEOPLE - len(gone)
    sent = on_the_topic(site)
    assert not gone & set(sent) and set(sent.values()) == {1}
    assert len(plan(site).to_submit) == 0


def test_each_read_holds_one_chunk_of_the_store(site: Site) -> None:
    from pipeline.sweep.finder import SweepFinder
    from pipeline.sweep.rules import RetentionSweep

    finder = SweepFinder("site-db", site.url)
    try:
        sizes = [len(rows) for rows in finder.chunks(RetentionSweep.model_validate(RULE), "rule", NOW, CHUNK)]
    finally:
        finder.close()
    assert sum(sizes) == ROWS and max(sizes) == CHUNK
