"""The fault suite's short run (bench/faults.py): kill -9 at random of every lane while requests flow.

The seed makes the schedule repeatable: 12 kills over 15 s, six of them of the Brevo connector
(the issue's pattern of rapid repeated kills of one lane), and the worker, the site database's
connector and the desk each killed too.
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
def test_a_short_fault_run_loses_nothing_duplicates_nothing_and_leaks_nothing() -> None:
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "faults.py"), "--requests", "180", "--rate", "6",
         "--kills", "12", "--seed", "1", "--people", "60", "--timeout-s", "240"],
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
    assert set(result["lanes"]) == LANES
    assert all(lane["kills"] >= 1 for lane in result["lanes"].values())
    assert result["lanes"]["connector-brevo"]["kills"] == 6
    # No lane stays down: after every kill, the lane did work again.
    never = {name: lane["never_resumed_after"] for name, lane in result["lanes"].items()}
    assert never == dict.fromkeys(LANES, 0)
    assert result["supervisor_restarts"]["after_exit"] >= 10  # two kills may land on one restart
