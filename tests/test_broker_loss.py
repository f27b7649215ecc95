"""Broker loss, end to end: the embedded broker (memory storage) is killed (SIGKILL) twice while requests
arrive, and restarted on the same port 3 s later, empty. Nobody but the pipeline creates its topics
again. Every request completes exactly once, including one the HTTP intake acknowledged while the
broker was down.

The pipeline runs as real processes (worker, connectors, desk) under a supervision loop that restarts a
process that exits, as `erasure up` does; the Kafka-native requests are published the way the README's
"Broker loss" asks of such a publisher: kept until `erasure status` shows them planned, and sent again
until then.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import yaml

from pipeline.crypto import seal_for_intake
from pipeline.devstack.broker import Broker, free_port, start_tansu
from pipeline.devstack.demo import Person
from pipeline.ledger.accounts import Access
from pipeline.ledger.outbox import outbox_table
from schemas import Identity, SubjectIdentities
from tests.harness import RunningPipeline, wait_until

pytestmark = pytest.mark.e2e

RUN = uuid.uuid4().hex[:8]
REQUESTS = 60
PER_SECOND = 5
OUTAGE_S = 3.0
KILL_AFTER = (12, 36)  # requests sent before each kill
PEOPLE = [Person(f"Perte{i} Essai{RUN}", f"perte{i}.{RUN}@example.test", f"+336{i:08d}")
          for i in range(REQUESTS + len(KILL_AFTER))]
TURNAROUND_S = 10  # each system is re-driven 10 s after it went silent (20, 40... after that)
FINAL = {"erased", "not_found", "held", "failed"}


class Stack:
    """The pipeline, its own broker, the desk as a process, and a loop restarting what exits."""

    def __init__(self, root: Path, database_url: str) -> None:
        self.broker: Broker = start_tansu(root / "broker")
        self.desk_port = free_port()
        self.pipeline = RunningPipeline(root / "pipeline", self.broker.bootstrap, database_url, PEOPLE, {
            "ERASURE_TOPIC_CHECK_INTERVAL_S": "1", "ERASURE_OUTBOX_RECHECK_AFTER_S": "5",
            "ERASURE_DESK_COOKIE_SECURE": "false"})
        register = yaml.safe_load(self.pipeline.systems_file.read_text())
        for system in register["systems"]:
            system["expected_turnaround_s"] = TURNAROUND_S
        self.pipeline.systems_file.write_text(yaml.safe_dump(register))
        self.token = Access(self.pipeline.ledger).add_client("contact-form", datetime.now(UTC))
        self.stopping = threading.Event()
        self.restarted: list[str] = []
        self.worker_log_at = 0  # where the worker's log stood at the last broker restart

    def start(self) -> Stack:
        self.pipeline.start()
        self.pipeline.spawn("desk", "desk", "--port", str(self.desk_port))
        wait_until(lambda: self._answers("/healthz"), 60, "the desk")
        threading.Thread(target=self._supervise, daemon=True).start()
        return self

    def _answers(self, path: str) -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{self.desk_port}{path}", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_worker_ready(self) -> None:
        """Until the stream worker (restarted or not) has said Ready since the last broker restart."""
        log = self.pipeline.log_path("worker")
        wait_until(lambda: "Worker]: Ready" in log.read_text(errors="replace")[self.worker_log_at:], 120,
                   "the stream worker to be ready")
        self.worker_log_at = log.stat().st_size

    def _supervise(self) -> None:
        while not self.stopping.wait(0.5):
            self.restarted += self.pipeline.supervisor.restart_exited(self.stopping.is_set)

    def post(self, person: Person) -> httpx.Response:
        sealed = seal_for_intake(self.pipeline.keys.intake_public, SubjectIdentities(
            identities=[Identity(identity_type="email", identity_value=person.email)]))
        body = {"request_id": str(uuid.uuid4()), "received_at": datetime.now(UTC).isoformat(),
                "channel": "http_api", "identities": sealed.model_dump()}
        return httpx.post(f"http://127.0.0.1:{self.desk_port}/v1/erasure-requests", json=body, timeout=30,
                          headers={"authorization": f"Bearer {self.token}"})

    def stop(self) -> None:
        self.stopping.set()
        self.pipeline.stop()
        self.broker.stop()


@pytest.fixture(scope="module")
def stack(postgres_url_module: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = Stack(tmp_path_factory.mktemp("broker-loss"), postgres_url_module).start()
    yield running
    running.stop()


def outbox_rows(stack: Stack) -> int:
    with stack.pipeline.ledger.engine.connect() as conn:
        return len(conn.execute(outbox_table.select()).all())


class KafkaNativePublisher:
    """A contact-form backend on Kafka: its own outbox of requests, sent again until planned."""

    def __init__(self, pipeline: RunningPipeline) -> None:
        self.pipeline = pipeline
        self.outbox: dict[str, str] = {}  # request id -> e-mail

    def submit(self, person: Person) -> str:
        request_id = str(uuid.uuid4())
        self.outbox[request_id] = person.email  # kept before it is sent
        self.pipeline.submit(person.email, request_id=request_id)
        return request_id

    def send_unplanned_again(self) -> int:
        now = datetime.now(UTC)
        unplanned = [rid for rid in self.outbox if self.pipeline.ledger.request(rid, now) is None]
        for rid in unplanned:
            self.pipeline.submit(self.outbox[rid], request_id=rid)
        for rid in set(self.outbox) - set(unplanned):
            del self.outbox[rid]
        return len(unplanned)


@pytest.mark.timeout(900)
def test_requests_complete_exactly_once_through_two_broker_losses(stack: Stack) -> None:
    kafka_native = KafkaNativePublisher(stack.pipeline)
    sent: list[str] = []
    while_down: list[str] = []
    for index, person in enumerate(PEOPLE[:REQUESTS]):
        if index in KILL_AFTER:
            stack.wait_worker_ready()  # so that a running worker lives through each loss
            stack.broker.kill()
            answer = stack.post(PEOPLE[REQUESTS + len(while_down)])
            assert answer.status_code == 202, answer.text  # durable in the ledger: no broker needed
            while_down.append(answer.json()["request_id"])
            time.sleep(OUTAGE_S)
            stack.broker.restart()  # same port, empty: no topic, no group, no producer id
        if index % 2:
            answer = stack.post(person)
            assert answer.status_code == 202, answer.text
            sent.append(answer.json()["request_id"])
        else:
            sent.append(kafka_native.submit(person))
        time.sleep(1 / PER_SECOND)
    everything = sent + while_down

    def all_final() -> bool:
        kafka_native.send_unplanned_again()
        now = datetime.now(UTC)
        views = [stack.pipeline.ledger.request(rid, now) for rid in everything]
        return all(v is not None and v.status != "in_progress" for v in views)

    wait_until(all_final, 480, "every request to finish", interval_s=5)
    now = datetime.now(UTC)
    for rid in everything:
        view = stack.pipeline.ledger.request(rid, now)
        assert view is not None and view.status == "completed", (rid, view)
        kinds = [e.kind for e in stack.pipeline.ledger.events(rid)]
        assert kinds.count("planned") == 1 and kinds.count("completed") == 1, (rid, kinds)
        finals = [(e.system, e.status) for e in stack.pipeline.ledger.events(rid)
                  if e.kind == "outcome" and e.status in FINAL]
        assert sorted(s for s, _ in finals) == ["brevo", "site-db"], (rid, finals)  # once each
    # The intake's outbox empties once the router has planned everything it acknowledged.
    wait_until(lambda: outbox_rows(stack) == 0, 60, "the outbox to drain")
    logs = stack.pipeline.all_logs()
    assert logs.count("topics: the broker lost") == 2, "the stream worker saw the topics go, each time"
    assert stack.restarted.count("worker") == 2, "and stopped, for its supervisor to start it afresh"
    assert "replacing the producer" in logs, "the connectors replaced the producers the broker forgot"
