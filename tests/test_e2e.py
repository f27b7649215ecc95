"""End to end through the real broker, real processes, a PostgreSQL ledger and the fake Brevo.

The tests share one running pipeline and run in file order; the last one scans
everything the run left behind (topics, ledger, logs) for the test identities.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa
from dateutil.relativedelta import relativedelta
from kafka import KafkaProducer
from kafka.producer.future import RecordMetadata

from pipeline.devstack.demo import Person
from pipeline.signing import INTAKE
from pipeline.signing_keys import load_signer
from pipeline.streaming import topics
from tests.harness import RunningPipeline, read_topic, wait_until

pytestmark = pytest.mark.e2e

RUN = uuid.uuid4().hex[:8]
PEOPLE = [
    Person(f"Yannick Essai{RUN}", f"yannick.{RUN}@example.test", f"+3361{int(RUN, 16) % 10**8:08d}"),
    Person(f"Zoé Essai{RUN}", f"zoe.{RUN}@example.test", "+33698765432"),
    Person(f"Xavier Essai{RUN}", f"xavier.{RUN}@example.test", "+33687654321"),
    Person(f"Walid Essai{RUN}", f"walid.{RUN}@example.test", "+33676543210"),
    Person(f"Vera Essai{RUN}", f"vera.{RUN}@example.test", "+33665432109"),
    Person(f"Ugo Essai{RUN}", f"ugo.{RUN}@example.test", "+33654321098"),
    Person(f"Tess Essai{RUN}", f"tess.{RUN}@example.test", "+33643210987", orders=1,
           fraud_signal=True),
]
EMAILS = [p.email for p in PEOPLE]
# Published in clear by a careless backend: it is in the requests topic, and must go no further.
CARELESS_EMAIL = f"careless.{RUN}@example.test"


@pytest.fixture(scope="module")
def pipeline(kafka, postgres_url_module: str, tmp_path_factory: pytest.TempPathFactory,  # type: ignore[no-untyped-def]
             ) -> Iterator[RunningPipeline]:
    running = RunningPipeline(tmp_path_factory.mktemp("e2e"), kafka.bootstrap, postgres_url_module,
                              PEOPLE).start()
    yield running
    running.stop()


def site_rows(pipeline: RunningPipeline, email: str) -> int:
    engine = sa.create_engine(pipeline.site_url)
    with engine.connect() as conn:
        count = conn.execute(sa.text("SELECT COUNT(*) FROM accounts WHERE email = :e"), {"e": email}).scalar()
    engine.dispose()
    return int(count or 0)


def test_request_completes_with_both_systems(pipeline: RunningPipeline) -> None:
    rid = pipeline.submit(EMAILS[0])
    view = pipeline.wait_final(rid)
    assert view.status == "completed" and view.on_time
    assert {s.system: s.status for s in view.systems} == {"brevo": "erased", "site-db": "erased"}
    assert site_rows(pipeline, EMAILS[0]) == 0 and site_rows(pipeline, EMAILS[5]) == 1
    assert not pipeline.brevo.has_contact(EMAILS[0]) and pipeline.brevo.has_contact(EMAILS[5])
    completed = wait_until(lambda: pipeline.completed_events(rid), 10, "the completion event")
    assert completed[0]["status"] == "completed"
    assert {s["system"] for s in completed[0]["systems"]} == {"brevo", "site-db"}
    # The contact-form backend hears of it: a signed webhook, and an event on the notifications topic.
    hooks = wait_until(lambda: [n for n, ok in pipeline.webhook.received if n["request_id"] == rid],
                       15, "the webhook")
    assert hooks[0]["kind"] == "completed" and hooks[0]["status"] == "completed"
    assert all(ok for _, ok in pipeline.webhook.received), "every webhook carries a valid signature"
    notices = [json.loads(r.value) for r in read_topic(pipeline.bootstrap, topics.NOTIFICATIONS)
               if r.key == rid.encode()]
    assert [n["kind"] for n in notices] == ["completed"]


def test_same_request_twice_completes_once(pipeline: RunningPipeline) -> None:
    rid = str(uuid.uuid4())
    pipeline.submit(EMAILS[1], request_id=rid)
    pipeline.submit(EMAILS[1], request_id=rid)
    pipeline.wait_final(rid)
    pipeline.submit(EMAILS[1], request_id=rid)  # once more, after completion
    time.sleep(3)
    assert len(pipeline.completed_events(rid)) == 1
    kinds = [e.kind for e in pipeline.ledger.events(rid)]
    assert kinds.count("planned") == 1 and kinds.count("completed") == 1
    assert kinds.count("outcome") == 2, kinds


def test_invalid_events_are_dead_lettered_and_the_next_request_completes(
        pipeline: RunningPipeline) -> None:
    # A careless publisher that holds the intake's signing key: its records are signed, and refused
    # for what they say.
    producer = KafkaProducer(bootstrap_servers=pipeline.bootstrap, acks="all")
    signer = load_signer(pipeline.signing_dir, INTAKE)

    def send(key: bytes, value: bytes) -> RecordMetadata:
        return producer.send(topics.REQUESTS, key=key, value=value,
                             headers=signer.headers(topics.REQUESTS, key, value)).get(10)

    garbage = send(b"junk", b"{not json")
    # Well-formed JSON with the identity in clear: it must be refused, and never echoed.
    clear = send(b"clear", json.dumps({
        "event_type": "erasure.requested", "request_id": str(uuid.uuid4()),
        "received_at": "2026-11-26T10:00:00+00:00",
        "identities": [{"identity_type": "email", "identity_value": CARELESS_EMAIL}]}).encode())
    producer.close()
    rid = pipeline.submit(EMAILS[2])
    assert pipeline.wait_final(rid).status == "completed"

    def dead_letters() -> list[dict[str, object]]:
        return [json.loads(r.value) for r in read_topic(pipeline.bootstrap, topics.DEADLETTER)]

    letters = wait_until(lambda: len(dead_letters()) >= 2 and dead_letters(), 15, "dead letters")
    coordinates = {(d["source_topic"], d["partition"], d["offset"]) for d in letters}
    assert (topics.REQUESTS, garbage.partition, garbage.offset) in coordinates
    assert (topics.REQUESTS, clear.partition, clear.offset) in coordinates
    by_offset = {(d["partition"], d["offset"]): d for d in letters}
    assert "identities" in str(by_offset[(clear.partition, clear.offset)]["reason"])
    assert CARELESS_EMAIL not in json.dumps(letters)


def test_rate_limited_brevo_is_retried_later_and_ends_erased(pipeline: RunningPipeline) -> None:
    # A reset longer than the in-process wait (1 s here): the task is re-queued with not_before.
    requests.post(f"{pipeline.brevo.url}/__fake__/faults",
                  json={"status": 429, "count": 1, "reset_s": 3}, timeout=5)
    rid = pipeline.submit(EMAILS[3])
    view = pipeline.wait_final(rid)
    brevo = next(s for s in view.systems if s.system == "brevo")
    assert (brevo.status, brevo.attempt) == ("erased", 2)
    history = [(e.system, e.status, e.attempt) for e in pipeline.ledger.events(rid) if e.system == "brevo"]
    assert history == [("brevo", "retrying", 1), ("brevo", "erased", 2)]
    assert not pipeline.brevo.has_contact(EMAILS[3])


def test_kill_9_of_a_connector_mid_flight_then_restart(pipeline: RunningPipeline) -> None:
    requests.post(f"{pipeline.brevo.url}/__fake__/latency", json={"delay_s": 4}, timeout=5)
    rid = pipeline.submit(EMAILS[4])
    wait_until(lambda: any(e.system == "site-db" for e in pipeline.ledger.events(rid)), 30,
               "the site database's outcome")
    time.sleep(1.0)  # brevo's task is now inside the slow HTTP call
    pipeline.kill("connector-brevo")
    requests.post(f"{pipeline.brevo.url}/__fake__/latency", json={"delay_s": 0}, timeout=5)
    pipeline.start_connector("brevo")
    view = pipeline.wait_final(rid, timeout_s=90)
    assert view.status == "completed"
    brevo_finals = [e for e in pipeline.ledger.events(rid)
                    if e.system == "brevo" and e.status in ("erased", "not_found", "failed")]
    assert len(brevo_finals) == 1, "recorded exactly once"
    assert brevo_finals[0].status in ("erased", "not_found")  # the killed call may have landed
    assert not pipeline.brevo.has_contact(EMAILS[4])
    time.sleep(2)
    assert len(pipeline.completed_events(rid)) == 1


def test_permanent_error_ends_failed_with_a_reason_that_names_no_one(
        pipeline: RunningPipeline) -> None:
    requests.post(f"{pipeline.brevo.url}/__fake__/faults", json={"status": 400, "count": 1}, timeout=5)
    rid = pipeline.submit(EMAILS[5])
    view = pipeline.wait_final(rid)
    assert view.status == "needs_attention" and view.deadline_flag is None
    brevo = next(s for s in view.systems if s.system == "brevo")
    assert brevo.status == "failed" and brevo.error is not None
    assert brevo.error["kind"] == "permanent"
    assert "brevo: HTTP 400 from DELETE /v3/contacts/{identifier}" in brevo.error["message"]
    assert EMAILS[5] not in json.dumps(brevo.error)
    assert pipeline.brevo.has_contact(EMAILS[5]), "nothing was erased at Brevo"
    assert [v.request_id for v in pipeline.ledger.list_requests(
        datetime.now(UTC), status="needs_attention")] == [rid]


def test_hold_ends_while_running_and_the_held_data_is_erased(pipeline: RunningPipeline) -> None:
    # Asked a year ago (less 20 s): the fraud signals' one-year hold ends 20 s from now.
    received = datetime.now(UTC) - relativedelta(years=1) + timedelta(seconds=20)
    rid = pipeline.submit(EMAILS[6], received_at=received)
    view = pipeline.wait_final(rid)
    assert view.status == "completed_with_holds" and view.on_time is False
    site = next(s for s in view.systems if s.system == "site-db")
    assert site.status == "held"
    assert {h["data_category"] for h in site.holds} == {"fraud_signals", "invoices", "accounting_records"}
    assert {h.data_category for h in pipeline.ledger.holds_of(rid)} == {
        "fraud_signals", "invoices", "accounting_records"}

    def released() -> bool:
        return any(e.kind == "released" for e in pipeline.ledger.events(rid))

    wait_until(released, 60, "the fraud signals' hold to be released")
    still = {h.data_category for h in pipeline.ledger.holds_of(rid) if h.released_at is None}
    assert still == {"invoices", "accounting_records"}
    engine = sa.create_engine(pipeline.site_url)
    with engine.connect() as conn:
        archived = conn.execute(sa.text("SELECT data_category FROM erasure_restricted_archive "
                                        "WHERE request_id = :r"), {"r": rid}).scalars().all()
    engine.dispose()
    assert sorted(archived) == ["invoices"], "fraud signals erased, the invoice still held"


def test_no_identity_in_clear_anywhere(pipeline: RunningPipeline, tmp_path: Path) -> None:
    needles = [n for p in PEOPLE for n in (p.email, p.email.upper(), p.name, p.phone)]
    haystacks: dict[str, str] = {}
    for topic in topics.all_topics(["site-db", "brevo"]):
        records = read_topic(pipeline.bootstrap, topic, idle_s=1.0)
        haystacks[f"topic {topic}"] = "\n".join(
            (r.key or b"").decode(errors="replace") + (r.value or b"").decode(errors="replace")
            for r in records)
    assert haystacks["topic erasure.requests.v1"], "the scan must actually read the topics"
    engine = sa.create_engine(pipeline.database_url)
    with engine.connect() as conn:
        for table in ("erasure_events", "erasure_requests", "erasure_system_outcomes"):
            rows = conn.execute(sa.text(f"SELECT * FROM {table}")).all()
            haystacks[f"ledger {table}"] = "\n".join(str(tuple(r)) for r in rows)
    engine.dispose()
    haystacks["process logs"] = pipeline.all_logs()
    assert "Worker]: Ready" in haystacks["process logs"]
    leaks = [(where, needle) for where, text in haystacks.items() for needle in needles
             if needle in text]
    leaks += [(where, CARELESS_EMAIL) for where, text in haystacks.items()
              if CARELESS_EMAIL in text and where != "topic erasure.requests.v1"]
    assert CARELESS_EMAIL in haystacks["topic erasure.requests.v1"], "the scan sees clear text"
    assert leaks == []
