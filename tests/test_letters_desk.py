"""The letter from the desk over real HTTP: linked from the request page, HTML as the person reads it
(its own Content-Security-Policy), PDF printed by Chromium; refusing a request from its page."""

from __future__ import annotations

import base64
import hashlib
import io
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from pipeline.deadlines import due_at
from pipeline.devstack.broker import Broker
from schemas import ErasureOutcome, ErasurePlanned, OutcomeError, PlannedTarget, SealedIdentities
from tests.desk_fixtures import OFFICER, SYSTEMS, VIEWER, Desk, seeded_desk
from tests.desk_server import csrf, login
from tests.test_letters import CHROMIUM, needs_chromium

REASON = "the identity check of the contact form was not completed"


@pytest.fixture(scope="module")
def desk(kafka: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Desk]:
    yield from seeded_desk(tmp_path_factory.mktemp("letters-desk"), kafka)


def flat(text: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", text).split())


def test_the_request_page_links_its_letters_and_the_letter_is_served_as_a_document(desk: Desk) -> None:
    viewer = login(desk.url, *VIEWER)
    page = viewer.get(f"/requests/{desk.held}").text
    for lang in ("fr", "en"):
        assert f'href="/requests/{desk.held}/letter?lang={lang}"' in page
        assert f'href="/requests/{desk.held}/letter.pdf?lang={lang}"' in page
    assert 'id="letters"' not in viewer.get(f"/requests/{desk.fresh}").text, "no letter due yet"
    response = viewer.get(f"/requests/{desk.held}/letter", params={"lang": "en", "recipients": "1"})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    [style] = re.findall(r"<style>(.*?)</style>", response.text, re.DOTALL)
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    policy = response.headers["content-security-policy"]
    assert f"style-src 'sha256-{digest}'" in policy and "default-src 'none'" in policy, "its style applies"
    text = flat(response.text)
    for words in ("issued invoices and credit notes", "Code de commerce, art. L123-22",
                  "The processor has committed to complete the erasure by 30 December 2026",
                  "It still keeps: anonymised contact record, until 30 December 2026",
                  "Recipients informed of your request", "https://www.cnil.fr/fr/plaintes", desk.held):
        assert words in text, words


def test_no_letter_yet_sends_the_officer_back_with_the_reason(desk: Desk) -> None:
    officer = login(desk.url, *OFFICER)
    response = officer.get(f"/requests/{desk.fresh}/letter", params={"lang": "fr"})
    assert response.status_code == 303 and response.headers["location"].startswith(f"/requests/{desk.fresh}?")
    assert "no letter is due yet" in officer.get(response.headers["location"]).text
    assert officer.get(f"/requests/{uuid.uuid4()}/letter").status_code == 404
    assert officer.get(f"/requests/{desk.held}/letter", params={"lang": "de"}).status_code == 422


@needs_chromium
def test_the_letter_downloads_as_a_pdf(desk: Desk) -> None:
    from pypdf import PdfReader

    assert CHROMIUM.exists()
    response = login(desk.url, *VIEWER).get(f"/requests/{desk.held}/letter.pdf", params={"lang": "fr"},
                                            timeout=90)
    assert response.status_code == 200 and response.headers["content-type"] == "application/pdf"
    assert f'filename="letter-{desk.held}-fr.pdf"' in response.headers["content-disposition"]
    text = " ".join(" ".join(p.extract_text() for p in PdfReader(io.BytesIO(response.content)).pages).split())
    for words in ("factures émises et avoirs", "Code de commerce, art. L123-22", "https://www.cnil.fr/fr/plaintes",
                  desk.held):
        assert words in text, words


def refusable(desk: Desk) -> str:
    rid = str(uuid.uuid4())
    received = datetime.now(UTC) - timedelta(days=1)
    events: list[ErasurePlanned | ErasureOutcome] = [ErasurePlanned(
        request_id=rid, received_at=received, due_at=due_at(received), subject_ref="sr_refused",
        identities=SealedIdentities(alg="secretbox-xsalsa20poly1305", key_id=rid, ciphertext="c2VjcmV0"),
        planned_at=received, targets=[PlannedTarget(system=s, expected_turnaround_s=3600) for s in SYSTEMS])]
    for system, status in (("paper-vendor", "manual"), ("site-db", "not_found"), ("brevo", "failed")):
        error = OutcomeError(kind="auth", message="brevo: HTTP 401") if status == "failed" else None
        events.append(ErasureOutcome(request_id=rid, system=system, attempt=1, status=status,  # type: ignore[arg-type]
                                     error=error, occurred_at=received))
    desk.ledger.record(events, received)
    return rid


def test_an_officer_refuses_a_request_from_its_page(desk: Desk) -> None:
    rid = refusable(desk)
    viewer = login(desk.url, *VIEWER)
    assert 'id="refuse"' not in viewer.get(f"/requests/{rid}").text
    denied = viewer.post(f"/requests/{rid}/refuse", data={"csrf": csrf(viewer, rid), "reason": REASON})
    assert denied.status_code == 403
    officer = login(desk.url, *OFFICER)
    assert 'id="refuse"' in officer.get(f"/requests/{rid}").text
    stale = officer.post(f"/requests/{rid}/refuse", data={"reason": REASON})
    assert stale.status_code == 403, "no form token, no action"
    done = officer.post(f"/requests/{rid}/refuse", data={"csrf": csrf(officer, rid), "reason": REASON})
    assert done.status_code == 303 and done.headers["location"] == f"/requests/{rid}"
    page = officer.get(f"/requests/{rid}").text
    assert 'id="request-status">refused<' in page and f"refused: {REASON}" in page
    assert f'class="author">{OFFICER[0]}<' in page
    assert 'id="refuse"' not in page and "/confirm" not in page and "/retry" not in page, "nothing to act on"
    letter = flat(officer.get(f"/requests/{rid}/letter", params={"lang": "en"}).text)
    assert REASON in letter and "judicial remedy" in letter and "https://www.cnil.fr/fr/plaintes" in letter
    assert desk.ledger.verify_chain() is None


def test_a_completed_request_cannot_be_refused(desk: Desk) -> None:
    officer = login(desk.url, *OFFICER)
    response = officer.post(f"/requests/{desk.held}/refuse",
                            data={"csrf": csrf(officer, desk.held), "reason": REASON})
    page = officer.get(response.headers["location"]).text
    assert "is already completed_with_holds" in page and "can no longer be refused" in page
    assert 'id="request-status">completed_with_holds<' in page
