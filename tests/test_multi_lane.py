"""Every connector lane in one process (what `erasure up` runs by default), on a real broker.

The process erases for every lane it hosts; a lane that stops making progress is named by
the supervisor, which restarts the process hosting it, and the lane works again.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline.devstack.broker import Broker
from pipeline.devstack.demo import Person
from pipeline.devstack.local import LocalPipeline
from pipeline.devstack.probes import wait_until
from pipeline.ledger import Ledger, RequestView, open_ledger
from pipeline.liveness import read

pytestmark = pytest.mark.e2e

CONNECTORS = "connectors"  # the one connector process, as `erasure up` names it


def start_one_process(pipeline: LocalPipeline) -> None:
    """The faust worker and one connector process hosting every lane of the register."""
    pipeline.spawn("worker", "worker")
    pipeline.spawn(CONNECTORS, "connector", *pipeline.system_ids)
    pipeline.wait_log("worker", "Worker]: Ready")
    for system in pipeline.system_ids:
        pipeline.wait_log(CONNECTORS, f"{system}: assigned")


def finished(ledger: Ledger, request_id: str) -> RequestView | None:
    view = ledger.request(request_id, datetime.now(UTC))
    return view if view is not None and view.status != "in_progress" else None


def person() -> Person:
    return Person("Inès Essai", f"ines.{uuid.uuid4().hex[:8]}@example.test", "+33600000042")


def test_one_process_erases_for_every_lane_it_hosts(kafka: Broker, tmp_path: Path) -> None:
    people = [person(), person()]
    ledger_url = f"sqlite:///{tmp_path / 'ledger.db'}"
    pipeline = LocalPipeline(tmp_path, kafka.bootstrap, ledger_url, people)
    ledger = open_ledger(ledger_url)
    try:
        start_one_process(pipeline)
        requests = [pipeline.intake.submit({"email": p.email}, datetime.now(UTC)) for p in people]
        for request_id in requests:
            view = wait_until(lambda r=request_id: finished(ledger, r), 90, "the request to finish")
            assert view.status == "completed"
            assert {s.system: s.status for s in view.systems} == dict.fromkeys(pipeline.system_ids, "erased")
        beats = read(pipeline.supervisor.heartbeat_path(CONNECTORS))  # type: ignore[arg-type]
        assert beats is not None and beats["pid"] == pipeline.processes[CONNECTORS].pid
        assert set(beats["loops"]) == set(beats["expected"]) == set(pipeline.system_ids)
        assert not pipeline.brevo.has_contact(people[0].email)
        pid = pipeline.processes[CONNECTORS].pid  # it holds each lane's claim, as their sole owner
        for system in pipeline.system_ids:
            lock = pipeline.home / "run" / f"lane.{system}.lock"
            assert lock.read_text().split() == [f"sole-owner:{pid}"]
    finally:
        pipeline.stop()
        ledger.close()


def test_a_stalled_lane_restarts_the_process_hosting_it_and_is_named(
        kafka: Broker, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="pipeline.devstack.supervisor")
    hana = person()
    ledger_url = f"sqlite:///{tmp_path / 'ledger.db'}"
    pipeline = LocalPipeline(tmp_path, kafka.bootstrap, ledger_url, [hana], stall_s=5.0)
    ledger = open_ledger(ledger_url)
    try:
        start_one_process(pipeline)
        pipeline.supervise()
        first = pipeline.processes[CONNECTORS]
        # Brevo answers nothing for a minute: the brevo lane holds its task and finishes none, while
        # the site-db lane beside it in the same process keeps working.
        pipeline.brevo.state.latency_s = 60.0
        offset = pipeline.supervisor.log_size(CONNECTORS)
        request_id = pipeline.intake.submit({"email": hana.email}, datetime.now(UTC))
        wait_until(lambda: first.poll() is not None, 90, "the supervisor to end the stalled process")
        pipeline.brevo.state.latency_s = 0.0
        pipeline.wait_log(CONNECTORS, "brevo: assigned", after=offset)
        view = wait_until(lambda: finished(ledger, request_id), 90, "the request to finish")
        assert view.status == "completed"
        assert {s.system: s.status for s in view.systems} == dict.fromkeys(pipeline.system_ids, "erased")
        assert pipeline.processes[CONNECTORS].pid != first.pid
    finally:
        pipeline.brevo.state.latency_s = 0.0
        pipeline.stop()
        ledger.close()
    said = [r.getMessage() for r in caplog.records
            if f"(pid {first.pid}) makes no progress" in r.getMessage()]
    assert said and said[0].startswith(CONNECTORS), said
    assert "its brevo loop holds 1 task(s) and finished none" in said[0]
