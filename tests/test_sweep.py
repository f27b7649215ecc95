"""`erasure sweep` over real site databases (SQLite, PostgreSQL, MariaDB) and a real broker: the dry run
counts the people each rule covers, the real run submits exactly those, a second run submits nobody."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.crypto import PipelineKeys, init_keys, load_keys, open_intake
from pipeline.devstack.broker import Broker
from pipeline.devstack.probes import read_topic
from pipeline.kafka_clients import ensure_topics
from pipeline.ledger import open_ledger
from pipeline.streaming import topics
from schemas import ErasureRequested
from tests.fakes.signers import TestSigners

NOW = datetime.now(UTC).replace(microsecond=0, tzinfo=None)
RUN = uuid.uuid4().hex[:8]
members = sa.Table(
    "members", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("email", sa.String(254)), sa.Column("phone", sa.String(40)),
    sa.Column("status", sa.String(20), nullable=False), sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("last_login_at", sa.DateTime))
# (email, phone, status, created, last login): days ago.
MEMBERS = [
    (f"lapsed.{RUN}@example.test", "+33611000001", "active", 2000, 1500),  # no login for 4 years
    (f"never.{RUN}@example.test", None, "active", 1900, None),  # never logged in, joined 5 years ago
    (f"recent.{RUN}@example.test", "+33611000003", "active", 2000, 10),
    (f"newcomer.{RUN}@example.test", None, "active", 30, None),
    (f"staff.{RUN}@example.test", None, "staff", 2000, 1500),  # the `where` filter leaves staff alone
    ("not an e-mail", None, "active", 2000, 1500),  # covered, but no identity anyone could erase by
]
COVERED = {f"lapsed.{RUN}@example.test", f"never.{RUN}@example.test"}
RULE = {"name": "inactive-members", "description": "members without login for 3 years",
        "table": "members", "identities": {"email": "email", "phone": "phone"},
        "older_than": {"column": "last_login_at", "fallback_column": "created_at", "period": "P3Y"},
        "where": {"status": "active"}}


def seed(url: str) -> None:
    engine = sa.create_engine(url)
    members.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(members.insert(), [
            {"id": i, "email": email, "phone": phone, "status": status,
             "created_at": NOW - timedelta(days=created), "last_login_at":
                 None if login is None else NOW - timedelta(days=login)}
            for i, (email, phone, status, created, login) in enumerate(MEMBERS, start=1)])
    engine.dispose()


@dataclass
class Site:
    url: str
    keys: PipelineKeys
    ledger_url: str


@pytest.fixture(params=["sqlite", "postgres", "mariadb"])
def site(request: pytest.FixtureRequest, tmp_path: Path, kafka: Broker,
         monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    url: str = request.getfixturevalue(f"{request.param}_url")
    seed(url)
    ensure_topics(kafka.bootstrap, [topics.REQUESTS], 4)
    home = tmp_path / "home"
    systems = tmp_path / "systems.yaml"
    systems.write_text(yaml.safe_dump({"systems": [
        {"id": "site-db", "kind": "internal", "location": "France", "data_categories": ["account"],
         "connector": {"type": "sql", "url_env": "SWEEP_TEST_SITE_URL", "tables": [
             {"table": "members", "match": {"email": "email", "phone": "phone"}, "action": "delete"}]},
         "retention_sweeps": [RULE]}]}))
    ledger_url = f"sqlite:///{tmp_path / 'ledger.db'}"
    for name, value in {"ERASURE_HOME_DIR": str(home), "ERASURE_SYSTEMS_FILE": str(systems),
                        "DATABASE_URL": ledger_url, "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap,
                        "SWEEP_TEST_SITE_URL": url}.items():
        monkeypatch.setenv(name, value)
    keys_init = CliRunner().invoke(main, ["keys", "init"])  # the intake keys and the sweeps' signing key
    assert keys_init.exit_code == 0, keys_init.output
    yield Site(url, load_keys(home / "keys", need_private=True), ledger_url)


def sweep(*args: str) -> str:
    result = CliRunner().invoke(main, ["sweep", *args])
    assert result.exit_code == 0, result.output
    return result.output


def submitted_requests(site: Site, kafka: Broker) -> list[tuple[ErasureRequested, set[str]]]:
    """The requests of this test's ledger on the requests topic, each with its opened e-mails."""
    ledger = open_ledger(site.ledger_url)
    try:
        with ledger.engine.connect() as conn:
            ids = set(conn.execute(sa.text("SELECT request_id FROM erasure_sweep_submissions")).scalars())
    finally:
        ledger.close()
    found = []
    for record in read_topic(kafka.bootstrap, topics.REQUESTS):
        if record.key is not None and record.key.decode() in ids:
            event = ErasureRequested.model_validate_json(record.value)
            assert site.keys.intake_private is not None
            opened = open_intake(site.keys.intake_private, event.identities)
            found.append((event, {i.identity_value for i in opened.identities if i.identity_type == "email"}))
    return found


def test_dry_run_counts_then_the_sweep_submits_exactly_those_people_once(site: Site, kafka: Broker) -> None:
    dry = sweep("--dry-run")
    assert ("site-db inactive-members (members without login for 3 years): 2 people, 0 submitted before, "
            "2 to submit; 1 row(s) without a valid identity left") in dry
    assert "dry run: nothing submitted" in dry
    assert submitted_requests(site, kafka) == []

    real = sweep("--rate-per-s", "50")
    assert "2 to submit" in real and "submitting" in real and "submitted 2 request(s)" in real
    requests = submitted_requests(site, kafka)
    assert sorted(email for _, emails in requests for email in emails) == sorted(COVERED)
    assert len(requests) == 2
    for event, _ in requests:
        assert (event.channel, event.verification, event.scope) == ("retention", "not_applicable", None)
    lapsed = next(e for e, emails in requests if f"lapsed.{RUN}@example.test" in emails)
    assert site.keys.intake_private is not None
    assert {(i.identity_type, i.identity_value) for i in open_intake(
        site.keys.intake_private, lapsed.identities).identities} == {
        ("email", f"lapsed.{RUN}@example.test"), ("phone", "+33611000001")}

    again = sweep()
    assert "2 people, 2 submitted before, 0 to submit" in again and "nothing to submit" in again
    assert len(submitted_requests(site, kafka)) == 2
    # Nothing identifying in what the operator reads.
    assert not any(email in dry + real + again for email, *_ in MEMBERS)


def test_one_rule_by_name_and_an_unknown_name(site: Site, kafka: Broker) -> None:
    assert "2 to submit" in sweep("--dry-run", "--rule", "inactive-members")
    result = CliRunner().invoke(main, ["sweep", "--rule", "inactive-staff"])
    assert result.exit_code == 1
    assert "no retention sweep named 'inactive-staff'" in result.output
    assert "declared: inactive-members" in result.output


def test_a_rule_naming_a_column_the_table_lacks_says_which_key(site: Site, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    systems: dict[str, Any] = yaml.safe_load((tmp_path / "systems.yaml").read_text())
    systems["systems"][0]["retention_sweeps"][0]["older_than"]["column"] = "last_seen_at"
    (tmp_path / "systems.yaml").write_text(yaml.safe_dump(systems))
    result = CliRunner().invoke(main, ["sweep", "--dry-run"])
    assert result.exit_code == 1
    assert ("system 'site-db', key systems[0].retention_sweeps[0].older_than.column: table 'members' has no "
            "column 'last_seen_at'") in result.output


def test_the_store_is_read_in_a_read_only_transaction(site: Site) -> None:
    from pipeline.sweep.finder import read_only

    engine = sa.create_engine(site.url)
    try:
        with read_only(engine) as conn, pytest.raises(sa.exc.DBAPIError):
            conn.execute(members.delete())
        with engine.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(members)).scalar() == len(MEMBERS)
    finally:
        engine.dispose()


def test_requests_carry_the_rule_scope(site: Site, kafka: Broker, tmp_path: Path) -> None:
    systems: dict[str, Any] = yaml.safe_load((tmp_path / "systems.yaml").read_text())
    systems["systems"][0]["retention_sweeps"][0]["systems"] = ["site-db"]
    (tmp_path / "systems.yaml").write_text(yaml.safe_dump(systems))
    sweep()
    requests = submitted_requests(site, kafka)
    assert len(requests) == 2
    assert {json.dumps(e.scope.model_dump() if e.scope else None) for e, _ in requests} == {
        json.dumps({"systems": ["site-db"], "data_categories": None})}


def test_requests_go_out_at_the_rate_asked(kafka: Broker, tmp_path: Path) -> None:
    """Paced by batches of a second's worth: 5 people at 2/s go out at 0 s, 1 s and 2 s (a fake clock)."""
    from pipeline.intake import IntakeClient
    from pipeline.signing import SWEEP
    from pipeline.sweep.plan import RulePlan, SweptPerson
    from pipeline.sweep.rules import RetentionSweep
    from pipeline.sweep.submit import SweepSubmitter
    from schemas import Identity, SubjectIdentities

    ensure_topics(kafka.bootstrap, [topics.REQUESTS], 4)
    init_keys(tmp_path / "keys")
    keys = load_keys(tmp_path / "keys")
    ledger = open_ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    people = [SweptPerson(str(uuid.uuid4()), SubjectIdentities(identities=[Identity(
        identity_type="email", identity_value=f"paced{n}.{RUN}@example.test")])) for n in range(5)]
    plan = RulePlan("site-db", RetentionSweep.model_validate(RULE), people)
    elapsed = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(round(seconds, 6))
        elapsed[0] += seconds

    progress: list[int] = []
    try:
        with IntakeClient(kafka.bootstrap, keys.intake_public, TestSigners().signer(SWEEP)) as client:
            sent = SweepSubmitter(client, ledger.sweeps, rate_per_s=2, monotonic=lambda: elapsed[0],
                                  sleep=sleep).submit(plan, progress.append)
        assert (sent, progress, slept) == (5, [2, 2, 1], [1.0, 1.0])
        assert ledger.sweeps.known([p.request_id for p in people]) == {p.request_id for p in people}
        assert ledger.sweeps.rule_of(people[0].request_id) == ("site-db", "inactive-members")
    finally:
        ledger.close()
