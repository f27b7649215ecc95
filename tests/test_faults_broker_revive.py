"""The embedded broker dies under `erasure up`'s supervision: it is started again, with the topics.

`erasure up` runs `Supervisor.supervise` with a `BrokerKeeper` at each turn; so does the second test,
over the real pipeline's processes and a broker of its own (killing the session's broker would break
the other tests). The broker is killed with SIGKILL; it comes back on the same port, empty, the
keeper creates the pipeline's topics, and a request published afterwards completes. The last test
does the same to a real `erasure up`, as an operator would see it.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaConsumer
from kafka.admin import KafkaAdminClient

from pipeline.devstack.broker import Broker, BrokerKeeper, start_tansu
from pipeline.devstack.demo import Person
from pipeline.kafka_clients import ensure_topics
from pipeline.streaming import topics
from schemas import FINAL_SYSTEM_STATUSES
from tests.erasure_up import ErasureUp
from tests.harness import RunningPipeline, wait_until

pytestmark = pytest.mark.e2e

RUN = uuid.uuid4().hex[:8]
PEOPLE = [Person(f"Relance{i} Essai{RUN}", f"relance{i}.{RUN}@example.test", f"+337{i:08d}")
          for i in range(2)]
PARTITIONS = 4  # what LocalPipeline creates; a topic Tansu makes by itself at a first produce has 1


def partitions(bootstrap: str, topic: str) -> int:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        return len(consumer.partitions_for_topic(topic) or ())
    finally:
        consumer.close()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    own = start_tansu(tmp_path / "broker")
    yield own
    own.stop()


def test_the_keeper_leaves_a_live_broker_alone_and_tries_again_when_topics_fail(broker: Broker) -> None:
    calls: list[str] = []

    def create(bootstrap: str) -> None:
        calls.append(bootstrap)
        if len(calls) == 1:
            raise ConnectionError("not answering yet")
        ensure_topics(bootstrap, [topics.REQUESTS], PARTITIONS)

    keeper = BrokerKeeper(broker, create)
    keeper()
    assert (calls, keeper.revived_at) == ([], []), "a live broker is left alone"
    first = broker.pid
    broker.kill()
    keeper()  # restarted, but the topics failed: not counted as back, the loop lives on
    assert broker.alive() and broker.pid != first
    assert keeper.revived_at == []
    keeper()  # the topics again, on the broker already running
    assert broker.pid is not None and len(calls) == 2 and len(keeper.revived_at) == 1
    assert partitions(broker.bootstrap, topics.REQUESTS) == PARTITIONS
    keeper()
    assert len(calls) == 2, "nothing more to do"
    broker.stop()
    keeper()
    assert not broker.alive() and len(calls) == 2, "a broker stopped on purpose stays stopped"


@pytest.mark.timeout(420)
def test_a_killed_broker_comes_back_with_its_topics_and_a_later_request_completes(
        broker: Broker, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    pipeline = RunningPipeline(tmp_path / "pipeline", broker.bootstrap, f"sqlite:///{tmp_path / 'ledger.db'}",
                               PEOPLE)
    keeper = BrokerKeeper(broker, lambda bootstrap: ensure_topics(
        bootstrap, topics.all_topics(pipeline.system_ids), PARTITIONS))
    stopping = threading.Event()
    supervision = threading.Thread(target=pipeline.supervisor.supervise, args=(stopping.is_set, 0.5, keeper),
                                   daemon=True)
    try:
        pipeline.start()
        before = pipeline.submit(PEOPLE[0].email)
        pipeline.wait_final(before, 120)
        supervision.start()
        with caplog.at_level(logging.WARNING, logger="pipeline.devstack.broker"):
            first = broker.pid
            broker.kill()
            wait_until(lambda: keeper.revived_at, 60, "the supervision loop to revive the broker")
        assert broker.alive() and broker.pid != first
        assert "the embedded broker is back on" in caplog.text
        # Created by the keeper with the pipeline's partitions, not by a client with Tansu's defaults.
        for topic in topics.all_topics(pipeline.system_ids):
            assert partitions(broker.bootstrap, topic) == PARTITIONS, topic

        after = pipeline.submit(PEOPLE[1].email)
        view = pipeline.wait_final(after, 300)
        assert view.status in {"completed", "completed_with_holds"}, view.status
        assert {s.system for s in view.systems} == set(pipeline.system_ids)
        assert all(s.status in FINAL_SYSTEM_STATUSES for s in view.systems), view.systems
    finally:
        stopping.set()
        if supervision.is_alive():
            supervision.join(10)
        pipeline.stop()


def tansu_children(pid: int) -> list[int]:
    """The embedded brokers `erasure up` (process `pid`) started: its children running tansu."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            command = (entry / "cmdline").read_bytes()
        except (OSError, IndexError):
            continue
        if int(stat[1]) == pid and b"tansu" in command.split(b"\0")[0]:
            found.append(int(entry.name))
    return found


@pytest.mark.timeout(420)
def test_erasure_up_starts_its_killed_broker_again_and_a_later_request_completes(tmp_path: Path) -> None:
    with ErasureUp(tmp_path, command_timeout_s=120) as up:
        wait_until(lambda: "erasure pipeline up" in up.log(), 180, "erasure up")
        bootstrap = json.loads((tmp_path / ".erasure" / "broker.json").read_text())["bootstrap"]
        brokers = tansu_children(up.pid)
        assert len(brokers) == 1, brokers
        os.kill(brokers[0], signal.SIGKILL)
        wait_until(lambda: "the embedded broker is back on" in up.log(), 60,
                   "erasure up to start its broker again")
        revived = tansu_children(up.pid)
        assert len(revived) == 1 and revived != brokers
        assert json.loads((tmp_path / ".erasure" / "broker.json").read_text())["bootstrap"] == bootstrap
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        try:
            assert {topics.REQUESTS, topics.OUTCOMES, topics.COMPLETED} <= set(admin.list_topics())
        finally:
            admin.close()

        submitted = up.erasure("submit", "--email", "bruno.dupont@example.org")
        assert submitted.returncode == 0, submitted.stderr
        view = up.wait_finished(submitted.stdout.strip(), 240, interval_s=2.0)
        assert view["status"] == "completed"
        assert all(s["status"] == "erased" for s in view["systems"]), view["systems"]
    assert up.stop() == 0, up.log()[-3000:]
    assert "bruno.dupont" not in up.log()
