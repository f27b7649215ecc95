"""The README's first command: `erasure up` on embedded defaults, then submit and status."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.desk_server import form_token
from tests.erasure_up import ErasureUp, clean_env
from tests.harness import wait_until

pytestmark = pytest.mark.e2e


def erasure(home: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], cwd=home, env=env,
                          capture_output=True, text=True, timeout=60)


def test_up_then_submit_a_seeded_person_completes(tmp_path: Path) -> None:
    with ErasureUp(tmp_path) as up:
        wait_until(lambda: (tmp_path / ".erasure" / "broker.json").exists(), 60, "the broker file")
        submitted = up.erasure("submit", "--email", "bruno.dupont@example.org")
        assert submitted.returncode == 0, submitted.stderr
        view = up.wait_finished(submitted.stdout.strip(), 60)
        assert view["status"] == "completed"
        statuses = {s["system"]: s["status"] for s in view["systems"]}
        assert statuses.pop("session-cache", "erased") == "erased"  # present when Redis answers
        assert statuses == {"brevo": "erased", "site-db": "erased", "uploads": "erased"}
        assert not list((tmp_path / ".erasure" / "uploads").rglob("*bruno*"))

        alice = up.erasure("submit", "--email", "alice.martin@example.org").stdout.strip()
        view = up.wait_finished(alice, 60)
        assert view["status"] == "completed_with_holds"
        statuses = {s["system"]: s["status"] for s in view["systems"]}
        assert (statuses["site-db"], statuses["brevo"], statuses["uploads"]) == (
            "held", "not_found", "erased")
        site = next(s for s in view["systems"] if s["system"] == "site-db")
        assert {h["data_category"] for h in site["holds"]} == {
            "invoices", "accounting_records", "card_data", "fraud_signals"}
        holds = json.loads(up.erasure("holds", "--json").stdout)
        assert {(h["system"], h["data_category"]) for h in holds} >= {("site-db", "invoices")}
        assert all(h["request_id"] == alice for h in holds)
        human = up.erasure("status", alice)
        assert "holds invoices until" in human.stdout and "L123-22" in human.stdout
        listed = up.erasure("list", "--status", "completed_with_holds")
        assert alice in listed.stdout
        assert up.erasure("ledger", "verify").stdout.startswith("ledger chain intact")
        import httpx

        password = (tmp_path / ".erasure" / "demo-officer.password").read_text().strip()
        with httpx.Client(base_url=up.desk_url, follow_redirects=True) as browser:
            page = browser.post("/login", data={"username": "demo-officer", "password": password,
                                                "csrf": form_token(browser)})
            assert page.status_code == 200 and alice in page.text
    assert up.stop() == 0, up.log()[-3000:]
    assert "bruno.dupont" not in up.log()


def test_submit_without_a_broker_says_what_to_do(tmp_path: Path) -> None:
    result = erasure(tmp_path, "submit", "--email", "x@example.org", env=clean_env())
    assert result.returncode != 0
    assert "run `erasure up`, or set KAFKA_BOOTSTRAP_SERVERS" in result.stderr
