"""The README's first command: `erasure up` on embedded defaults, then submit and status."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.devstack.broker import free_port
from tests.desk_server import form_token
from tests.harness import wait_until

pytestmark = pytest.mark.e2e


def erasure(home: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], cwd=home, env=env,
                          capture_output=True, text=True, timeout=60)


def test_up_then_submit_a_seeded_person_completes(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if k not in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL") and not k.startswith("ERASURE_")}
    env["ERASURE_DESK_PORT"] = str(free_port())
    log = open(tmp_path / "up.log", "wb")  # noqa: SIM115
    up = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "up"], cwd=tmp_path, env=env,
                          stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until(lambda: (tmp_path / ".erasure" / "broker.json").exists(), 60, "the broker file")
        submitted = erasure(tmp_path, "submit", "--email", "bruno.dupont@example.org", env=env)
        assert submitted.returncode == 0, submitted.stderr
        request_id = submitted.stdout.strip()

        def finished() -> dict | None:  # type: ignore[type-arg]
            shown = erasure(tmp_path, "status", request_id, "--json", env=env)
            if shown.returncode != 0:
                return None
            view = json.loads(shown.stdout)
            return view if view["status"] != "in_progress" else None

        view = wait_until(finished, 60, "the request to finish", interval_s=1.0)
        assert view["status"] == "completed"
        statuses = {s["system"]: s["status"] for s in view["systems"]}
        assert statuses.pop("session-cache", "erased") == "erased"  # present when Redis answers
        assert statuses == {"brevo": "erased", "site-db": "erased", "uploads": "erased"}
        assert not list((tmp_path / ".erasure" / "uploads").rglob("*bruno*"))

        alice = erasure(tmp_path, "submit", "--email", "alice.martin@example.org", env=env).stdout.strip()
        request_id = alice
        view = wait_until(finished, 60, "Alice's request to finish", interval_s=1.0)
        assert view["status"] == "completed_with_holds"
        statuses = {s["system"]: s["status"] for s in view["systems"]}
        assert (statuses["site-db"], statuses["brevo"], statuses["uploads"]) == (
            "held", "not_found", "erased")
        site = next(s for s in view["systems"] if s["system"] == "site-db")
        assert {h["data_category"] for h in site["holds"]} == {
            "invoices", "accounting_records", "card_data", "fraud_signals"}
        holds = json.loads(erasure(tmp_path, "holds", "--json", env=env).stdout)
        assert {(h["system"], h["data_category"]) for h in holds} >= {("site-db", "invoices")}
        assert all(h["request_id"] == alice for h in holds)
        human = erasure(tmp_path, "status", request_id, env=env)
        assert "holds invoices until" in human.stdout and "L123-22" in human.stdout
        listed = erasure(tmp_path, "list", "--status", "completed_with_holds", env=env)
        assert request_id in listed.stdout
        assert erasure(tmp_path, "ledger", "verify", env=env).stdout.startswith("ledger chain intact")
        import httpx

        desk = f"http://127.0.0.1:{env['ERASURE_DESK_PORT']}"
        password = (tmp_path / ".erasure" / "demo-officer.password").read_text().strip()
        with httpx.Client(base_url=desk, follow_redirects=True) as browser:
            page = browser.post("/login", data={"username": "demo-officer", "password": password,
                                                "csrf": form_token(browser)})
            assert page.status_code == 200 and alice in page.text
    finally:
        os.killpg(up.pid, signal.SIGTERM)
        try:
            up.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(up.pid, signal.SIGKILL)
        log.close()
    assert up.returncode == 0, (tmp_path / "up.log").read_text()[-3000:]
    assert "bruno.dupont" not in (tmp_path / "up.log").read_text()


def test_submit_without_a_broker_says_what_to_do(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if k != "KAFKA_BOOTSTRAP_SERVERS" and not k.startswith("ERASURE_")}
    result = erasure(tmp_path, "submit", "--email", "x@example.org", env=env)
    assert result.returncode != 0
    assert "run `erasure up`, or set KAFKA_BOOTSTRAP_SERVERS" in result.stderr
