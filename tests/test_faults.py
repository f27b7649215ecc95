"""The fault suite's short run (bench/faults.py): kill -9 at random of every lane while requests flow,
and twice of the embedded broker, which the supervision loop starts again (as `erasure up` does).

The seed makes the schedule repeatable: 12 kills over 15 s, six of them of the Brevo connector
(the issue's pattern of rapid repeated kills of one lane), and the worker, the site database's
connector and the desk each killed too; the broker comes back empty each time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
LANES = {"worker", "connector-site-db", "connector-brevo", "desk"}


@pytest.mark.timeout(480)
def test_a_short_fault_run_with_broker_losses_loses_nothing_duplicates_nothing_and_leaks_nothing() -> None:
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "faults.py"), "--requests", "180", "--rate", "6",
         "--kills", "12", "--broker-restarts", "2", "--seed", "1", "--people", "60", "--timeout-s", "240"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=460)
    assert run.stdout, run.stderr[-3000:]
    result = json.loads(run.stdout)
    failed = [f"{c['name']}: {c['detail']}" for c in result["checks"] if not c["passed"]]
    assert not failed, failed
    assert run.returncode == 0, run.stderr[-3000:]
    assert [c["name"] for c in result["checks"]] == [
        "every request reached a final state", "each request once in the ledger",
        "the ledger's chain verifies", "no identity in clear in any topic", "no identity in any log"]
    assert result["requests"] == 180 and result["kills"] == 12
    assert result["broker_restarts"] == 2 and len(result["broker_back_after_s"]) == 2, "the broker came back"
    assert set(result["lanes"]) == LANES
    assert all(lane["kills"] >= 1 for lane in result["lanes"].values())
    assert result["lanes"]["connector-brevo"]["kills"] == 6
    # No lane stays down: after every kill, the lane did work again.
    never = {name: lane["never_resumed_after"] for name, lane in result["lanes"].items()}
    assert never == dict.fromkeys(LANES, 0)
    # Nor after the broker's returns: every lane did work after each.
    after_broker = {name: lane["resume_after_broker_return_s"] for name, lane in result["lanes"].items()}
    assert all(len(times) == 2 and None not in times for times in after_broker.values()), after_broker
    assert result["supervisor_restarts"]["after_exit"] >= 10  # two kills may land on one restart
