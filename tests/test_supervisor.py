"""The dev stack's one supervisor: children by name, log files, kill, restart, stop."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline.devstack.supervisor import ChildExited, Supervisor

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
