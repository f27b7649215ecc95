"""`LetterWriter`: the one way in: a request's letter as facts, HTML, text, PDF or webhook event."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from connectors.retention import RetentionPolicy
from pipeline.ledger import Ledger
from pipeline.letters.event import ErasureLetter, LetterBody
from pipeline.letters.facts import LetterFacts, LetterKind, letter_facts
from pipeline.letters.labels import LANGS, Lang
from pipeline.letters.pdf import DEFAULT_CHROMIUM, html_to_pdf
from pipeline.letters.render import RenderedLetter, render
from pipeline.register import SystemsRegister

if TYPE_CHECKING:
    from pipeline.settings import Settings

Format = Literal["text", "html", "pdf"]


@dataclass(frozen=True)
class LetterWriter:
    """Renders letters from the ledger when they are needed; no letter is ever stored."""

    register: SystemsRegister | None = None
    policy: RetentionPolicy | None = None
    sender: str | None = None
    chromium: Path = DEFAULT_CHROMIUM

    @classmethod
    def from_settings(cls, settings: Settings, register: SystemsRegister | None,
                      policy: RetentionPolicy | None) -> LetterWriter:
        return cls(register, policy, settings.letter_sender, settings.chromium_path)

    def facts(self, ledger: Ledger, request_id: str, now: datetime, kind: LetterKind | None = None,
              recipients: bool = False) -> LetterFacts:
        return letter_facts(ledger, request_id, now, kind, self.register, self.policy, recipients,
                            self.sender)

    def letter(self, ledger: Ledger, request_id: str, lang: Lang, now: datetime,
               kind: LetterKind | None = None, recipients: bool = False) -> RenderedLetter:
        return render(self.facts(ledger, request_id, now, kind, recipients), lang)

    def document(self, letter: RenderedLetter, fmt: Format) -> bytes:
        """The letter as a file: UTF-8 text or HTML, or a PDF printed by Chromium."""
        if fmt == "pdf":
            return html_to_pdf(letter.html, self.chromium)
        return (letter.text if fmt == "text" else letter.html).encode("utf-8")

    def event(self, ledger: Ledger, request_id: str, kind: LetterKind, letter_id: str,
              now: datetime) -> ErasureLetter:
        """The webhook's `erasure.letter`: the letter in every language, rendered now."""
        facts = self.facts(ledger, request_id, now, kind)
        letters = [render(facts, lang) for lang in LANGS]
        return ErasureLetter(
            letter_id=letter_id, request_id=request_id, kind=kind, status=facts.status,
            letters=[LetterBody(lang=r.lang, subject=r.subject, text=r.text, html=r.html) for r in letters],
            occurred_at=now)
