"""Letters to the person, from a real ledger: the demo's Alice erased by the demo's real connectors
(site database, fake Brevo over HTTP, uploads), her letter in French and English as text, HTML and a
PDF printed by Chromium and read back; the extension letter; letters delivered on the webhook."""

from __future__ import annotations

import asyncio
import io
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from connectors.base import TaskContext
from connectors.registry import build_connector
from pipeline import notifications
from pipeline.cli import letters as letters_cli
from pipeline.deadlines import due_at
from pipeline.devstack.demo import (
    DEMO_BREVO_KEY_ENV,
    DEMO_PEOPLE,
    demo_api_key,
    demo_systems,
    seed_brevo,
    seed_site_database,
    seed_uploads,
)
from pipeline.devstack.fake_brevo import FakeBrevo
from pipeline.ledger import Ledger, open_ledger
from pipeline.ledger.actions import extend_deadline
from pipeline.letters import LetterError, LetterWriter
from pipeline.policy import load_policy
from pipeline.register import SystemsRegister
from pipeline.streaming.housekeeping import Housekeeping
from schemas import (
    ErasureOutcome,
    ErasurePlanned,
    Identity,
    PlannedTarget,
    SealedIdentities,
    SubjectIdentities,
)
from tests.fakes.publisher import MemoryPublisher
from tests.webhook_receiver import SECRET, Receiver

ALICE = DEMO_PEOPLE[0]
NOW = datetime.now(UTC).replace(microsecond=0)
RECEIVED = NOW - timedelta(days=2)
CHROMIUM = Path(shutil.which("chromium") or "/usr/bin/chromium")
needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(),
                                    reason="Debian's chromium is not installed (apt-get install -y chromium)")
# What Alice's letter must say of each category kept, in each language, and how it names the law.
KEPT = {
    "fr": {"invoices": "factures émises et avoirs",
           "accounting_records": "écritures comptables et pièces justificatives",
           "card_data": "numéro et date d'expiration de carte bancaire",
           "fraud_signals": "signaux de lutte contre la fraude"},
    "en": {"invoices": "issued invoices and credit notes",
           "accounting_records": "accounting entries and supporting documents",
           "card_data": "payment card number and expiry date",
           "fraud_signals": "anti-fraud signals"},
}
MONTHS = {"fr": ["janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre",
                 "octobre", "novembre", "décembre"],
          "en": ["January", "February", "March", "April", "May", "June", "July", "August", "September",
                 "October", "November", "December"]}
NO_PROCESSOR_DATA = {"fr": "Brevo (France / EU (Brevo SAS)) : ne détenait aucune donnée vous concernant.",
                     "en": "Brevo (France / EU (Brevo SAS)): held no data about you."}


def flat(text: str) -> str:
    """Whitespace of any kind (line breaks, no-break spaces) as single spaces."""
    return " ".join(text.split())


def spelled(moment: datetime, lang: str) -> str:
    day = "1er" if lang == "fr" and moment.day == 1 else str(moment.day)
    return f"{day} {MONTHS[lang][moment.month - 1]} {moment.year}"


def items(text: str) -> list[str]:
    """The list items of a plain-text letter, each on one line."""
    found: list[str] = []
    for line in text.splitlines():
        if line.startswith("- "):
            found.append(line[2:])
        elif line.startswith("  ") and found:
            found[-1] += " " + line.strip()
    return [flat(item) for item in found]


@dataclass
class Case:
    ledger: Ledger
    request_id: str
    writer: LetterWriter


def sealed(rid: str) -> SealedIdentities:
    return SealedIdentities(alg="secretbox-xsalsa20poly1305", key_id=rid, ciphertext="c2VjcmV0")


def plan(rid: str, systems: list[str], received: datetime = RECEIVED) -> ErasurePlanned:
    return ErasurePlanned(request_id=rid, received_at=received, due_at=due_at(received), subject_ref="sr_l",
                          identities=sealed(rid), planned_at=received, channel="contact_form",
                          verification="email_confirmation",
                          targets=[PlannedTarget(system=s, expected_turnaround_s=60) for s in systems])


def erase_alice(root: Path, ledger: Ledger) -> Case:
    """The demo's systems, seeded as `erasure up` seeds them, each erasing Alice with its real connector."""
    site_url = f"sqlite:///{root / 'site.db'}"
    seed_site_database(site_url)
    seed_uploads(root / "uploads")
    key = demo_api_key()
    brevo = FakeBrevo({key})
    brevo_url = brevo.start()
    seed_brevo(brevo_url, key)
    register = SystemsRegister.model_validate(demo_systems(site_url, brevo_url, None, root / "uploads"))
    policy, _ = load_policy(None)
    rid = str(uuid.uuid4())
    subject = SubjectIdentities(identities=[Identity(identity_type="email", identity_value=ALICE.email)])
    events: list[ErasurePlanned | ErasureOutcome] = [plan(rid, register.ids)]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(DEMO_BREVO_KEY_ENV, key)
        try:
            for entry in register.systems:
                connector = build_connector(entry.id, entry.connector.type, entry.connector_settings())
                try:
                    result = connector.erase(subject, TaskContext(request_id=rid, system=entry.id, attempt=1,
                                                                  received_at=RECEIVED, retention=policy))
                finally:
                    connector.close()
                events.append(ErasureOutcome(request_id=rid, system=entry.id, attempt=1, status=result.status,
                                             holds=result.holds, evidence=result.evidence, occurred_at=NOW))
        finally:
            brevo.stop()
    ledger.record(events, NOW)
    return Case(ledger, rid, LetterWriter(register, policy, sender="Exemple SAS, DPO"))


@pytest.fixture(scope="module")
def alice(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Case]:
    root = tmp_path_factory.mktemp("alice")
    ledger = open_ledger(f"sqlite:///{root / 'ledger.db'}")
    yield erase_alice(root, ledger)
    ledger.close()


def test_alice_is_held_in_the_site_database_and_unknown_to_brevo(alice: Case) -> None:
    view = alice.ledger.request(alice.request_id, NOW)
    assert view is not None and view.status == "completed_with_holds"
    assert {s.system: s.status for s in view.systems} == {"site-db": "held", "brevo": "not_found",
                                                          "uploads": "erased"}
    assert {h.data_category for h in alice.ledger.holds_of(alice.request_id)} == set(KEPT["en"])


@pytest.mark.parametrize("lang", ["fr", "en"])
def test_alice_letter_names_each_kept_category_with_its_law_and_end_date(alice: Case, lang: str) -> None:
    letter = alice.writer.letter(alice.ledger, alice.request_id, lang, NOW)  # type: ignore[arg-type]
    listed = items(letter.text)
    for hold in alice.ledger.holds_of(alice.request_id):
        [item] = [i for i in listed if i.startswith(KEPT[lang][hold.data_category])]
        assert flat(hold.citation) in item, (hold.data_category, item)
        assert spelled(hold.retain_until, lang) in item, (hold.data_category, item)
        assert "(site-db)" in item
    assert NO_PROCESSOR_DATA[lang] in listed, "the processor informed, by its name"
    assert any(i.startswith("uploads") for i in listed)
    body = flat(letter.text)
    assert alice.request_id in body and "https://www.cnil.fr/fr/plaintes" in body
    assert ("Madame, Monsieur," if lang == "fr" else "Dear requester,") in body
    assert "Exemple SAS, DPO" in body
    for document in (letter.text, letter.html):
        assert ALICE.email not in document and ALICE.name not in document and ALICE.phone not in document


@pytest.mark.parametrize("lang", ["fr", "en"])
def test_recipients_are_listed_only_when_the_person_asked(alice: Case, lang: str) -> None:
    heading = {"fr": "Destinataires informés de votre demande", "en": "Recipients informed of your request"}
    rights = {"fr": "Vos droits", "en": "Your rights"}
    plain = alice.writer.letter(alice.ledger, alice.request_id, lang, NOW)  # type: ignore[arg-type]
    asked = alice.writer.letter(alice.ledger, alice.request_id, lang, NOW,  # type: ignore[arg-type]
                                recipients=True)
    assert heading[lang] not in plain.text
    section = asked.text.split(heading[lang])[1].split(rights[lang])[0]
    assert items(section) == [NO_PROCESSOR_DATA[lang]], "Brevo, the one processor"


@needs_chromium
def test_alice_letter_as_pdf_reads_back_with_its_facts(alice: Case) -> None:
    from pypdf import PdfReader

    writer = LetterWriter(alice.writer.register, alice.writer.policy, chromium=CHROMIUM)
    for lang in ("fr", "en"):
        letter = writer.letter(alice.ledger, alice.request_id, lang, NOW)  # type: ignore[arg-type]
        pdf = writer.document(letter, "pdf")
        assert pdf.startswith(b"%PDF-")
        reader = PdfReader(io.BytesIO(pdf))
        text = flat(" ".join(page.extract_text() for page in reader.pages))
        assert reader.metadata is not None and reader.metadata.title == letter.subject
        for hold in alice.ledger.holds_of(alice.request_id):
            assert flat(KEPT[lang][hold.data_category]) in text
            assert flat(hold.citation) in text and spelled(hold.retain_until, lang) in text
        assert "Brevo" in text and alice.request_id in text and "https://www.cnil.fr/fr/plaintes" in text


def test_extension_letter_states_the_reason_and_the_new_due_date(tmp_path: Path) -> None:
    ledger = open_ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    rid = str(uuid.uuid4())
    received = datetime(2026, 1, 31, 9, 0, tzinfo=UTC)
    ledger.record([plan(rid, ["brevo"], received)], received)
    writer = LetterWriter()
    with pytest.raises(LetterError, match="no letter is due yet"):
        writer.letter(ledger, rid, "en", received)
    new_due = extend_deadline(ledger, rid, 2, "your account is linked to 14 others", "olivia",
                              received + timedelta(days=3))
    for lang, first_due, due in (("en", "28 February 2026", "30 April 2026"),
                                 ("fr", "28 février 2026", "30 avril 2026")):
        text = flat(writer.letter(ledger, rid, lang, received).text)  # type: ignore[arg-type]
        assert "your account is linked to 14 others" in text
        assert first_due in text and due in text and spelled(new_due, lang) == due
        assert "https://www.cnil.fr/fr/plaintes" in text
    with pytest.raises(LetterError, match="completion letter is written once it is completed"):
        writer.letter(ledger, rid, "fr", received, kind="completion")
    ledger.close()


def test_letters_reach_the_webhook_signed_in_both_languages_once(alice: Case, tmp_path: Path) -> None:
    """Housekeeping's tick: the completion notification, then the letter it calls for, rendered now."""
    receiver = Receiver()
    housekeeping = Housekeeping(alice.ledger, MemoryPublisher(), ["site-db", "brevo", "uploads"],
                                data_key_grace_s=3600, webhook_url=receiver.url, webhook_secret=SECRET,
                                letters=alice.writer)
    try:
        asyncio.run(housekeeping.run(NOW))
        asyncio.run(housekeeping.run(NOW + timedelta(hours=1)))
    finally:
        receiver.stop()
    bodies = [body for body, ok in receiver.received if ok and body["request_id"] == alice.request_id]
    assert all(ok for _, ok in receiver.received), "every POST signed"
    assert [b["event_type"] for b in bodies] == ["erasure.notification", "erasure.letter"], "each once"
    letter = bodies[1]
    assert (letter["kind"], letter["status"]) == ("completion", "completed_with_holds")
    assert [body["lang"] for body in letter["letters"]] == ["fr", "en"]
    for body in letter["letters"]:
        assert "Code de commerce, art. L123-22" in body["text"] and "<!doctype html>" in body["html"]
        assert ALICE.email not in str(body) and ALICE.name not in str(body)
    assert notifications.pending_letters(alice.ledger, NOW + timedelta(days=1)) == []


def test_cli_letter_prints_text_and_writes_a_pdf(alice: Case, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(letters_cli.wiring, "ledger", lambda _settings: alice.ledger)
    monkeypatch.setattr(letters_cli, "letter_writer", lambda _settings: alice.writer)
    runner = CliRunner()
    text = runner.invoke(letters_cli.letter, [alice.request_id, "--lang", "en", "--recipients"])
    assert text.exit_code == 0, text.output
    assert "Recipients informed of your request" in text.output and "Code de commerce" in text.output
    missing = runner.invoke(letters_cli.letter, [str(uuid.uuid4()), "--lang", "fr"])
    assert missing.exit_code == 1 and "no request" in missing.output
    if CHROMIUM.exists():
        out = tmp_path / "alice.pdf"
        pdf = runner.invoke(letters_cli.letter, [alice.request_id, "--lang", "fr", "--format", "pdf",
                                                 "--out", str(out)])
        assert pdf.exit_code == 0, pdf.output
        assert out.read_bytes().startswith(b"%PDF-")
