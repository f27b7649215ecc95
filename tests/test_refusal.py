"""Refusing a request (Art. 12(4)) on a real ledger, SQLite and PostgreSQL: the request ends `refused`,
the chain records who refused and still verifies, the letter states the reason and the rights; a
request that erased anything, or has a task under way, cannot be refused; nothing reopens it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from pipeline import notifications
from pipeline.deadlines import due_at
from pipeline.ledger import Ledger, open_ledger
from pipeline.ledger.actions import ActionError, confirm_manual, refuse, retry_system
from pipeline.letters import LetterError, LetterWriter
from pipeline.policy import load_policy
from schemas import ErasureOutcome, ErasurePlanned, OutcomeError, PlannedTarget, SealedIdentities

RECEIVED = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)
NOW = RECEIVED + timedelta(days=3)
REASON = "we could not verify that the request came from the account holder"
SYSTEMS = ["brevo", "paper-vendor", "site-db"]


@pytest.fixture(params=["sqlite", "postgres"])
def ledger(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ledger]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('refusal') / 'ledger.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    opened = open_ledger(url)
    yield opened
    opened.close()


def outcome(rid: str, system: str, status: str, **extra: object) -> ErasureOutcome:
    return ErasureOutcome(request_id=rid, system=system, attempt=1, status=status,  # type: ignore[arg-type]
                          occurred_at=RECEIVED, **extra)  # type: ignore[arg-type]


def request(ledger: Ledger, outcomes: dict[str, str]) -> str:
    """A request to the three systems; `outcomes` says what each has reported (none: still planned)."""
    rid = str(uuid.uuid4())
    events: list[ErasurePlanned | ErasureOutcome] = [ErasurePlanned(
        request_id=rid, received_at=RECEIVED, due_at=due_at(RECEIVED), subject_ref="sr_r",
        identities=SealedIdentities(alg="secretbox-xsalsa20poly1305", key_id=rid, ciphertext="c2VjcmV0"),
        planned_at=RECEIVED, targets=[PlannedTarget(system=s, expected_turnaround_s=60) for s in SYSTEMS])]
    for system, status in outcomes.items():
        error = OutcomeError(kind="auth", message=f"{system}: HTTP 401") if status == "failed" else None
        events.append(outcome(rid, system, status, error=error))
    ledger.record(events, RECEIVED)
    return rid


def refusable(ledger: Ledger) -> str:
    """Nothing erased, nothing under way: a manual system waiting, one failed, one that had nothing."""
    return request(ledger, {"paper-vendor": "manual", "brevo": "failed", "site-db": "not_found"})


def test_refused_request_is_recorded_in_the_chain_and_its_letter_says_why(ledger: Ledger) -> None:
    rid = refusable(ledger)
    refuse(ledger, rid, f"  {REASON}  ", "olivia", NOW)
    view = ledger.request(rid, NOW)
    assert view is not None and view.status == "refused" and view.deadline_flag is None
    [event] = [e for e in ledger.events(rid) if e.kind == "refused"]
    assert (event.status, event.recorded_at) == ("refused", NOW)
    assert '"author":"olivia"' in event.payload and REASON not in event.payload, "the chain holds a digest"
    assert ledger.verify_chain() is None
    writer = LetterWriter()
    for lang, words in (("en", ["we decided not to act on this request", "Nothing was erased",
                                "judicial remedy", "https://www.cnil.fr/fr/plaintes", "5 November 2026"]),
                        ("fr", ["nous avons décidé de ne pas donner suite",
                                "effacée au titre de cette demande",
                                "recours devant la juridiction compétente", "https://www.cnil.fr/fr/plaintes",
                                "5 novembre 2026"])):
        letter = writer.letter(ledger, rid, lang, NOW)  # type: ignore[arg-type]
        text = " ".join(letter.text.split())
        assert REASON in text and rid in text
        assert all(word in text for word in words), lang
    assert [(n[1], n[2]) for n in notifications.pending_letters(ledger, NOW)] == [(rid, "refusal")]


def test_nothing_reopens_a_refused_request(ledger: Ledger) -> None:
    rid = refusable(ledger)
    refuse(ledger, rid, REASON, "olivia", NOW)
    with pytest.raises(ActionError, match="already refused"):
        refuse(ledger, rid, REASON, "olivia", NOW)
    with pytest.raises(ActionError, match="was refused: nothing more is done"):
        retry_system(ledger, rid, "brevo", "olivia", NOW)
    policy, _ = load_policy(None)
    with pytest.raises(ActionError, match="was refused: nothing more is done"):
        confirm_manual(ledger, rid, "paper-vendor", "erased", "olivia", NOW, policy)
    later = NOW + timedelta(days=20)
    assert [t for t in ledger.redrive_silent(later) if t.request_id == rid] == [], "no task sent again"
    assert rid not in {c.request_id for c in ledger.unpublished_completions()}, "no erasure to announce"
    with pytest.raises(LetterError, match="a completion letter is written once it is completed"):
        LetterWriter().letter(ledger, rid, "en", NOW, kind="completion")
    assert ledger.verify_chain() is None


def test_a_request_that_needs_attention_can_be_refused(ledger: Ledger) -> None:
    rid = request(ledger, {"paper-vendor": "not_found", "brevo": "failed", "site-db": "failed"})
    assert ledger.request(rid, NOW).status == "needs_attention"  # type: ignore[union-attr]
    refuse(ledger, rid, REASON, "olivia", NOW)
    assert ledger.request(rid, NOW).status == "refused"  # type: ignore[union-attr]


@pytest.mark.parametrize(("outcomes", "words"), [
    ({"paper-vendor": "erased", "brevo": "not_found", "site-db": "erased"},
     "is already completed (on 2026-11-02): its data was erased as asked; it can no longer be refused"),
    ({"paper-vendor": "manual", "site-db": "erased", "brevo": "failed"},
     "site-db already reported erased: the person's data is erased there"),
    ({"paper-vendor": "manual", "site-db": "held", "brevo": "failed"},
     "site-db already reported held"),
    ({"paper-vendor": "manual", "brevo": "retrying"}, "brevo is retrying: a task is under way"),
    ({"paper-vendor": "manual", "brevo": "failed"}, "site-db is planned: a task is under way"),
])
def test_refusal_is_refused_once_anything_was_erased_or_is_under_way(
        ledger: Ledger, outcomes: dict[str, str], words: str) -> None:
    rid = request(ledger, outcomes)
    before = ledger.request(rid, NOW)
    with pytest.raises(ActionError) as refused:
        refuse(ledger, rid, REASON, "olivia", NOW)
    assert words in str(refused.value)
    assert ledger.request(rid, NOW) == before, "nothing changed"
    assert not [e for e in ledger.events(rid) if e.kind == "refused"]


def test_a_refusal_needs_its_reason(ledger: Ledger) -> None:
    rid = refusable(ledger)
    with pytest.raises(ActionError, match="needs its reason"):
        refuse(ledger, rid, "   ", "olivia", NOW)
    with pytest.raises(ActionError, match="no request"):
        refuse(ledger, str(uuid.uuid4()), REASON, "olivia", NOW)
