"""An operator's view: `/metrics` matches the ledger, `/readyz` says when the ledger is gone,
`erasure status --lanes` prints each system's counts; after a real run (processes, broker, desk),
the retries, dead letters by reason and each lane's consumer lag, which grows while a lane is
stopped and returns to zero once it runs again."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pipeline import kafka_clients
from pipeline.codec import encode
from pipeline.deadlines import due_at
from pipeline.devstack.broker import Broker, free_port, start_tansu
from pipeline.devstack.demo import Person
from pipeline.ledger import Ledger
from pipeline.streaming import topics
from schemas import ErasureOutcome, ErasurePlanned, ErasureTask, PlannedTarget, SealedIdentities
from tests.harness import RunningPipeline, wait_until
from tests.security.desk_app import SmallDesk, small_desk

SYSTEMS = ("brevo", "stripe")


def _plan(rid: str, received: datetime) -> ErasurePlanned:
    sealed = SealedIdentities(alg="secretbox-xsalsa20poly1305", key_id=rid, ciphertext="c2VjcmV0")
    return ErasurePlanned(request_id=rid, received_at=received, due_at=due_at(received),
                          subject_ref=f"sr_{rid[:8]}", identities=sealed, planned_at=received,
                          targets=[PlannedTarget(system=s, expected_turnaround_s=3600) for s in SYSTEMS])


def _outcome(rid: str, system: str, status: str, at: datetime) -> ErasureOutcome:
    return ErasureOutcome(request_id=rid, system=system, attempt=1, status=status,  # type: ignore[arg-type]
                          occurred_at=at)


def seed(ledger: Ledger) -> dict[str, str]:
    """Besides the small desk's request (2 days old, paper-vendor manual): one completed, one needing
    attention (stripe failed), one 40 days old with brevo retrying (overdue), one just planned."""
    now = datetime.now(UTC)
    ids = {name: str(uuid.uuid4()) for name in ("completed", "failed", "overdue", "fresh")}
    old, recent = now - timedelta(days=40), now - timedelta(days=3)
    ledger.record([_plan(ids["completed"], recent), _outcome(ids["completed"], "brevo", "erased", recent),
                   _outcome(ids["completed"], "stripe", "not_found", recent),
                   _plan(ids["failed"], recent), _outcome(ids["failed"], "brevo", "erased", recent),
                   _outcome(ids["failed"], "stripe", "failed", recent),
                   _plan(ids["fresh"], now)], now)
    ledger.record([_plan(ids["overdue"], old), _outcome(ids["overdue"], "brevo", "retrying", old)], old)
    return ids


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[SmallDesk]:
    root = tmp_path / "ledger"
    root.mkdir()
    with small_desk(root) as served:
        seed(served.ledger)
        yield served


def scrape(url: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    response = httpx.get(f"{url}/metrics", timeout=30)
    assert response.status_code == 200
    assert response.headers["x-content-type-options"] == "nosniff"  # the desk's headers apply
    assert response.headers["cache-control"] == "no-store"
    return {family.name: {tuple(sorted(s.labels.items())): s.value for s in family.samples}
            for family in text_string_to_metric_families(response.text)}


def test_metrics_match_the_ledger(desk: SmallDesk) -> None:
    before = datetime.now(UTC)
    scraped = scrape(desk.url)
    after = datetime.now(UTC)
    views = desk.ledger.list_requests(after, limit=1000)
    states: dict[str, int] = {}
    for view in views:
        states[view.status] = states.get(view.status, 0) + 1
    assert states == {"in_progress": 3, "completed": 1, "needs_attention": 1}
    assert {dict(k)["state"]: v for k, v in scraped["erasure_requests"].items()} == states
    outcomes: dict[tuple[str, str], int] = {}
    for view in views:
        for s in desk.ledger.request(view.request_id, after).systems:  # type: ignore[union-attr]
            outcomes[(s.system, s.status)] = outcomes.get((s.system, s.status), 0) + 1
    assert {(dict(k)["system"], dict(k)["status"]): v
            for k, v in scraped["erasure_system_outcomes"].items()} == outcomes
    assert outcomes[("brevo", "retrying")] == 1 and outcomes[("stripe", "failed")] == 1
    assert outcomes[("brevo", "planned")] == 1 and outcomes[("paper-vendor", "manual")] == 1
    lane_open = {dict(k)["system"]: v for k, v in scraped["erasure_lane_open"].items()}
    assert lane_open == {"brevo": 2, "stripe": 2, "paper-vendor": 1}
    lane_late = {dict(k)["system"]: v for k, v in scraped["erasure_lane_overdue"].items()}
    assert lane_late == {"brevo": 1, "stripe": 1, "paper-vendor": 0}  # the 40-day-old request's rows

    unfinished = [v for v in views if v.status == "in_progress"]
    oldest = min(v.received_at for v in unfinished)
    age = scraped["erasure_oldest_unfinished_request_age_seconds"][()]
    assert (before - oldest).total_seconds() - 1 <= age <= (after - oldest).total_seconds() + 1
    nearest = min(v.due_at for v in unfinished)
    margin = scraped["erasure_deadline_margin_seconds"][()]
    assert margin < 0  # the 40-day-old request is overdue
    assert (nearest - after).total_seconds() - 1 <= margin <= (nearest - before).total_seconds() + 1
    assert scraped["erasure_overdue_requests"][()] == len(
        desk.ledger.list_requests(after, overdue=True)) == 1
    assert scraped["erasure_ledger_chain_length"][()] == len(desk.ledger.events()) \
        == desk.ledger.chain_head()[0]
    assert scraped["erasure_ledger_up"][()] == 1


def test_no_personal_data_and_no_login(desk: SmallDesk) -> None:
    for path in ("/metrics", "/healthz", "/readyz"):
        response = httpx.get(f"{desk.url}{path}", timeout=30, follow_redirects=False)
        assert response.status_code == 200, path
        assert "content-security-policy" in response.headers
        for view in desk.ledger.list_requests(datetime.now(UTC), limit=1000):
            assert view.request_id not in response.text and view.subject_ref not in response.text


def test_readyz_fails_when_the_ledger_is_gone(tmp_path: Path) -> None:
    root = tmp_path / "ledger"
    root.mkdir()
    with small_desk(root) as desk:
        assert httpx.get(f"{desk.url}/readyz", timeout=30).status_code == 200
        shutil.rmtree(root)  # the ledger's database and its directory are gone
        desk.ledger.engine.dispose()  # no pooled connection still holds the deleted file
        response = httpx.get(f"{desk.url}/readyz", timeout=30)
        assert response.status_code == 503
        assert "cache-control" in response.headers and str(root) not in response.text
        assert httpx.get(f"{desk.url}/healthz", timeout=30).status_code == 200  # the process still answers
        scraped = scrape(desk.url)
        assert scraped["erasure_ledger_up"][()] == 0 and "erasure_requests" not in scraped


def test_status_lanes_prints_each_systems_counts(desk: SmallDesk, tmp_path: Path) -> None:
    url = str(desk.ledger.engine.url)
    env = {**os.environ, "DATABASE_URL": url, "ERASURE_HOME_DIR": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "pipeline.cli", "status", "--lanes"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines()[1:] if line.strip()}
    header = result.stdout.splitlines()[0].split()
    assert header[0] == "system"
    table = {system: dict(zip(header[1:], map(int, cells), strict=True)) for system, cells in rows.items()
             if system in ("brevo", "stripe", "paper-vendor")}
    assert table["brevo"] == {**table["brevo"], "retrying": 1, "planned": 1, "erased": 2, "open": 2,
                              "overdue": 1}
    assert table["stripe"] == {**table["stripe"], "failed": 1, "not_found": 1, "planned": 2, "open": 2}
    assert table["paper-vendor"] == {**table["paper-vendor"], "manual": 1, "open": 1, "overdue": 0}
    assert "requests: 3 in progress" in result.stdout and "1 overdue" in result.stdout


@pytest.mark.parametrize("database", ["postgres_url", "mariadb_url"])
def test_figures_on_every_ledger_database(database: str, request: pytest.FixtureRequest) -> None:
    from pipeline.ledger import open_ledger

    ledger = open_ledger(request.getfixturevalue(database))
    try:
        seed(ledger)
        now = datetime.now(UTC)
        figures = ledger.figures(now)
        assert figures.requests_by_state == {"in_progress": 2, "completed": 1, "needs_attention": 1}
        lanes = {lane.system: lane for lane in figures.lanes}
        assert lanes["brevo"].by_status == {"erased": 2, "retrying": 1, "planned": 1}
        assert (lanes["brevo"].open, lanes["brevo"].overdue, lanes["stripe"].overdue) == (2, 1, 1)
        assert figures.overdue_requests == 1 and figures.chain_length == len(ledger.events())
        assert figures.oldest_unfinished_received_at is not None and figures.nearest_due_at is not None
        assert 39 < (now - figures.oldest_unfinished_received_at).days <= 40
        assert figures.nearest_due_at < now
        ledger.ping()
    finally:
        ledger.close()


# -- after a real run: the pipeline's processes, its own broker, the desk as a process ------------------
RUN_PEOPLE = [Person(f"Mesure{i} Essai", f"mesure{i}.{uuid.uuid4().hex[:6]}@example.test", f"+3361000000{i}")
              for i in range(6)]


@dataclass
class Run:
    pipeline: RunningPipeline
    broker: Broker
    url: str


@pytest.fixture(scope="module")
def run(postgres_url_module: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    root = tmp_path_factory.mktemp("metrics-run")
    broker = start_tansu(root / "broker")
    port = free_port()
    pipeline = RunningPipeline(root / "pipeline", broker.bootstrap, postgres_url_module, RUN_PEOPLE, {
        "ERASURE_BROKER_FIGURES_CACHE_S": "0", "ERASURE_DESK_COOKIE_SECURE": "false"}).start()
    pipeline.spawn("desk", "desk", "--port", str(port))
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: _answers(f"{url}/healthz"), 60, "the desk")
    yield Run(pipeline, broker, url)
    pipeline.stop()
    broker.stop()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def by(scraped: dict[str, dict[tuple[tuple[str, str], ...], float]], family: str,
       *labels: str) -> dict[tuple[str, ...], float]:
    return {tuple(dict(k)[label] for label in labels): v for k, v in scraped.get(family, {}).items()}


def unsigned_task(request_id: str) -> bytes:
    sealed = SealedIdentities(alg="secretbox-xsalsa20poly1305", key_id=request_id, ciphertext="c2VjcmV0")
    now = datetime.now(UTC)
    return encode(ErasureTask(request_id=request_id, system="brevo", attempt=1, received_at=now,
                              due_at=due_at(now), subject_ref="sr_u", identities=sealed))


def test_metrics_match_the_ledger_after_a_real_run(run: Run) -> None:
    httpx.post(f"{run.pipeline.brevo.url}/__fake__/faults", json={"status": 429, "count": 1, "reset_s": 2},
               timeout=5)
    ids = [run.pipeline.submit(person.email) for person in RUN_PEOPLE[:3]]
    producer = kafka_clients.producer(run.broker.bootstrap, "careless-publisher")
    producer.send(topics.REQUESTS, key=b"junk", value=b"{not json").get(10)
    producer.send(topics.task_topic("brevo"), key=b"forged", value=unsigned_task(str(uuid.uuid4()))).get(10)
    producer.close()
    for rid in ids:
        run.pipeline.wait_final(rid)

    def settled() -> dict[str, dict[tuple[tuple[str, str], ...], float]] | None:
        scraped = scrape(run.url)
        letters = by(scraped, "erasure_dead_letters", "consumer", "reason")
        caught_up = all(v == 0 for v in by(scraped, "erasure_consumer_lag", "lane").values())
        return scraped if len(letters) == 2 and caught_up else None

    scraped = wait_until(settled, 60, "the dead letters counted and every lane caught up")
    now = datetime.now(UTC)
    views = run.pipeline.ledger.list_requests(now, limit=1000)
    states: dict[str, int] = {}
    outcomes: dict[tuple[str, str], int] = {}
    for view in views:
        states[view.status] = states.get(view.status, 0) + 1
        for s in run.pipeline.ledger.request(view.request_id, now).systems:  # type: ignore[union-attr]
            outcomes[(s.system, s.status)] = outcomes.get((s.system, s.status), 0) + 1
    assert states == {"completed": 3}
    assert by(scraped, "erasure_requests", "state") == {(k,): v for k, v in states.items()}
    assert by(scraped, "erasure_system_outcomes", "system", "status") == outcomes
    retrying = [e for rid in ids for e in run.pipeline.ledger.events(rid) if e.status == "retrying"]
    assert [(e.system, e.kind) for e in retrying] == [("brevo", "outcome")]
    retries = by(scraped, "erasure_retries", "system", "reason")
    assert retries[("brevo", "processor")] == 1 and retries[("site-db", "processor")] == 0
    assert by(scraped, "erasure_dead_letters", "consumer", "reason") == {
        ("router", "unsigned"): 1, ("connector:brevo", "unsigned"): 1}
    assert set(by(scraped, "erasure_consumer_lag", "lane")) == {("router",), ("aggregator",), ("brevo",),
                                                                  ("site-db",)}
    assert scraped["erasure_broker_up"][()] == 1 and scraped["erasure_intake_outbox_pending"][()] == 0
    ready = httpx.get(f"{run.url}/readyz", timeout=10)
    assert ready.status_code == 200 and ready.json() == {"status": "ready", "ledger": "ok", "broker": "ok"}


def test_lag_grows_while_a_lane_is_stopped_and_returns_to_zero(run: Run) -> None:
    run.pipeline.kill("connector-brevo")
    ids = [run.pipeline.submit(person.email) for person in RUN_PEOPLE[3:]]

    def brevo_lag() -> float:
        return by(scrape(run.url), "erasure_consumer_lag", "lane").get(("brevo",), -1)

    assert wait_until(brevo_lag, 60, "tasks waiting on the stopped lane") > 0
    assert by(scrape(run.url), "erasure_lane_open", "system")[("brevo",)] >= len(ids)
    run.pipeline.start_connector("brevo")
    for rid in ids:
        assert run.pipeline.wait_final(rid, timeout_s=90).status == "completed"
    wait_until(lambda: brevo_lag() == 0, 60, "the lane to catch up")
