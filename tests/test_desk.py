"""The officer's desk over real HTTP: roles, actions with their authors, deadlines, exports."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline.devstack.broker import Broker
from pipeline.streaming import topics
from tests.desk_fixtures import OFFICER, VIEWER, Desk, seeded_desk
from tests.desk_server import csrf, form_token, login
from tests.harness import read_topic


@pytest.fixture(scope="module")
def desk(kafka: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Desk]:
    yield from seeded_desk(tmp_path_factory.mktemp("desk"), kafka)


def test_pages_need_a_login(desk: Desk) -> None:
    import httpx

    response = httpx.get(f"{desk.url}/requests/{desk.fresh}")
    assert response.status_code == 303 and response.headers["location"] == "/login"
    with httpx.Client(base_url=desk.url) as client:
        bad = client.post("/login", data={"username": OFFICER[0], "password": "wrong-password",
                                          "csrf": form_token(client)})
    assert bad.status_code == 401 and "wrong password" in bad.text


def test_filters(desk: Desk) -> None:
    officer = login(desk.url, *OFFICER)
    overdue = officer.get("/", params={"deadline": "overdue"}).text
    assert desk.overdue_manual in overdue and desk.fresh not in overdue
    attention = officer.get("/", params={"status": "needs_attention"}).text
    assert desk.failed in attention and desk.held not in attention
    assert desk.held in officer.get("/", params={"q": desk.held[:8]}).text


def test_request_page_shows_who_when_deadline_evidence_and_holds(desk: Desk) -> None:
    page = login(desk.url, *VIEWER).get(f"/requests/{desk.held}").text
    for expected in ("contact_form", "email_confirmation", "Legal deadline", "invoices until",
                     "Code de commerce, art. L123-22", "GDPR Art. 17(3)(b)", "completed_with_holds",
                     "Ledger chain head"):
        assert expected in page, expected
    assert "<form method=\"post\" action=\"/requests" not in page, "a viewer gets no action forms"


WORDS = ("accepted, completes by 2026-12-30", "residual: anonymised contact record until 2026-12-30; "
         "deleted customer record (id, deleted flag) (no end date stated)")


def test_request_page_and_certificate_say_accepted_and_name_residual_data(desk: Desk) -> None:
    viewer = login(desk.url, *VIEWER)
    page = viewer.get(f"/requests/{desk.held}").text
    certificate = viewer.get(f"/requests/{desk.held}/certificate.html").text
    for text in (page, certificate):
        for words in WORDS:
            assert words in text, words
        assert "completes_by" not in text and "[{" not in text, "no raw field names or lists"


def test_erasure_status_says_accepted_and_names_residual_data(desk: Desk,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from pipeline.cli import officers

    monkeypatch.setattr(officers.wiring, "ledger_views", lambda _settings: desk.ledger.views)
    result = CliRunner().invoke(officers.status, [desk.held])
    assert result.exit_code == 0, result.output
    brevo = next(line for line in result.output.splitlines() if line.strip().startswith("brevo"))
    assert "http_status=200" in brevo and all(words in brevo for words in WORDS)


@pytest.mark.parametrize("action", ["systems/brevo/retry", "systems/paper-vendor/confirm", "extend"])
def test_a_viewer_cannot_act(desk: Desk, action: str) -> None:
    viewer = login(desk.url, *VIEWER)
    token = csrf(viewer, desk.failed)
    response = viewer.post(f"/requests/{desk.failed}/{action}",
                           data={"csrf": token, "outcome": "erased", "months": "1", "reason": "x"})
    assert response.status_code == 403 and "viewer" in response.text


def test_officer_actions_are_recorded_with_their_author(desk: Desk) -> None:
    officer = login(desk.url, *OFFICER)
    # Retry the failed system: a new attempt is published on its task topic.
    response = officer.post(f"/requests/{desk.failed}/systems/brevo/retry",
                            data={"csrf": csrf(officer, desk.failed)})
    assert response.status_code == 303
    tasks = [json.loads(r.value) for r in read_topic(desk.bootstrap, topics.task_topic("brevo"))
             if r.key == desk.failed.encode()]
    assert [(t["attempt"], t["system"]) for t in tasks] == [(2, "brevo")]
    view = desk.ledger.request(desk.failed, datetime.now(UTC))
    assert view is not None and view.status == "in_progress"
    # Confirm the manual system of the overdue request: it completes.
    officer.post(f"/requests/{desk.overdue_manual}/systems/paper-vendor/confirm",
                 data={"csrf": csrf(officer, desk.overdue_manual), "outcome": "erased",
                       "note": "letter 2026-11-20"})
    page = officer.get(f"/requests/{desk.overdue_manual}").text
    assert 'id="request-status">completed<' in page
    # Extend the fresh request, with its reason.
    officer.post(f"/requests/{desk.fresh}/extend",
                 data={"csrf": csrf(officer, desk.fresh), "months": "2", "reason": "many linked accounts"})
    fresh = desk.ledger.request(desk.fresh, datetime.now(UTC))
    assert fresh is not None and fresh.extension_months == 2
    for request_id, kind in ((desk.failed, "officer_retry"), (desk.overdue_manual, "manual_confirmed"),
                             (desk.fresh, "deadline_extended")):
        timeline = officer.get(f"/requests/{request_id}").text
        assert kind.replace("_", " ") in timeline and f'class="author">{OFFICER[0]}<' in timeline


def test_extension_rules(desk: Desk) -> None:
    officer = login(desk.url, *OFFICER)
    no_reason = officer.post(f"/requests/{desk.fresh}/extend",
                             data={"csrf": csrf(officer, desk.fresh), "months": "1", "reason": " "})
    assert "needs its reason" in officer.get(no_reason.headers["location"]).text
    late = officer.post(f"/requests/{desk.overdue_manual}/extend",
                        data={"csrf": csrf(officer, desk.overdue_manual), "months": "1", "reason": "late"})
    page = officer.get(late.headers["location"]).text
    assert "first month is over" in page or "nothing to extend" in page


def test_exports(desk: Desk, tmp_path: Path) -> None:
    officer = login(desk.url, *OFFICER)
    evidence = officer.get(f"/requests/{desk.held}/evidence.json").json()
    assert evidence["status"] == "completed_with_holds"
    head = evidence["ledger_chain_head"]
    assert head["verified"] is True and len(head["hash"]) == 64
    assert any(s["holds"] for s in evidence["systems"])
    certificate = officer.get(f"/requests/{desk.held}/certificate.html")
    assert "Certificate of erasure" in certificate.text and head["hash"] in certificate.text
    rows = list(csv.DictReader(io.StringIO(officer.get("/export.csv").text)))
    assert {desk.held, desk.failed, desk.fresh} <= {r["request_id"] for r in rows}
    assert next(r for r in rows if r["request_id"] == desk.overdue_manual)["status"]
