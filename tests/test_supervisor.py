"""The dev stack's one supervisor: children by name, logs, kill, restart, stop; a hung child restarted."""

from __future__ import annotations

import logging
import os
import signal
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline.devstack.broker import Broker
from pipeline.devstack.demo import Person
from pipeline.devstack.local import LocalPipeline
from pipeline.devstack.probes import wait_until
from pipeline.devstack.supervisor import ChildExited, Supervisor
from pipeline.ledger import RequestView, open_ledger

READY = "fake brevo on"


def test_kill_restart_and_stop(tmp_path: Path) -> None:
    supervisor = Supervisor({**os.environ, "BREVO_API_KEY": "k"}, tmp_path / "logs")
    try:
        supervisor.spawn("fake:brevo", "fake", "brevo")
        supervisor.wait_log("fake:brevo", READY, timeout_s=30)
        assert supervisor.log_path("fake:brevo").name == "fake-brevo.log"
        first = supervisor.pids()["fake:brevo"]
        supervisor.kill("fake:brevo")
        assert supervisor.restart_exited(lambda: True) == [], "no restart while stopping"
        offset = supervisor.log_size("fake:brevo")
        assert supervisor.restart_exited() == ["fake:brevo"]
        supervisor.wait_log("fake:brevo", READY, timeout_s=30, after=offset)
        assert supervisor.pids()["fake:brevo"] != first
    finally:
        supervisor.stop_all(timeout_s=10)
    assert supervisor.processes["fake:brevo"].poll() is not None, "stopped"


def test_waiting_on_a_child_that_exits_shows_its_log(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "BREVO_API_KEY"}
    supervisor = Supervisor(env, tmp_path)
    supervisor.spawn("fake", "fake", "brevo")
    with pytest.raises(ChildExited, match="set BREVO_API_KEY"):
        supervisor.wait_log("fake", READY, timeout_s=30)
    supervisor.stop_all()


@pytest.mark.e2e
def test_a_connector_that_hangs_is_restarted_and_its_lane_works_again(
        kafka: Broker, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="pipeline.devstack.supervisor")
    email = f"hana.{uuid.uuid4().hex[:8]}@example.test"
    ledger_url = f"sqlite:///{tmp_path / 'ledger.db'}"
    people = [Person("Hana Essai", email, "+33600000099")]
    pipeline = LocalPipeline(tmp_path, kafka.bootstrap, ledger_url, people, stall_s=5.0)
    ledger = open_ledger(ledger_url)
    try:
        pipeline.start()
        pipeline.supervise()
        hung = pipeline.processes["connector-brevo"]
        offset = pipeline.supervisor.log_size("connector-brevo")
        os.kill(hung.pid, signal.SIGSTOP)  # alive, but its poll loop no longer turns
        wait_until(lambda: hung.poll() is not None, 90, "the supervisor to end the hung connector")
        pipeline.wait_log("connector-brevo", "assigned", after=offset)
        request_id = pipeline.intake.submit({"email": email}, datetime.now(UTC))

        def finished() -> RequestView | None:
            view = ledger.request(request_id, datetime.now(UTC))
            return view if view is not None and view.status != "in_progress" else None

        view = wait_until(finished, 90, "the request to finish")
        assert view.status == "completed"
        assert {s.system: s.status for s in view.systems} == {"brevo": "erased", "site-db": "erased"}
    finally:
        pipeline.stop()
        ledger.close()
    said = [r.getMessage() for r in caplog.records if f"(pid {hung.pid}) makes no progress" in r.getMessage()]
    assert said and said[0].startswith("connector-brevo") and "its brevo loop has not turned" in said[0]
