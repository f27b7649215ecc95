"""Letters rendered from their facts: HTML from the Jinja2 templates (one per kind and language), plain
text from that HTML (so the two never say different things), a subject line for an e-mail."""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterable
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, pass_context, select_autoescape
from jinja2.runtime import Context

from pipeline.letters.facts import LetterFacts
from pipeline.letters.labels import (
    CNIL_COMPLAINTS_URL,
    CNIL_POSTAL_ADDRESS,
    Lang,
    category_label,
    format_date,
    legal_basis_label,
)

TEMPLATES_DIR = Path(__file__).parent / "templates"
TEXT_WIDTH = 76
# Only these break a line: the templates' no-break spaces (French `:`, dates) hold words together.
_ASCII_SPACES = re.compile(r"[ \t\n\r\f\v]+")

APOSTROPHE = "\N{RIGHT SINGLE QUOTATION MARK}"  # French typography, as in the templates
WORDS: dict[Lang, dict[str, str]] = {
    "fr": {"reference": "Référence",
           "closing": f"Nous vous prions d{APOSTROPHE}agréer, Madame, Monsieur, l{APOSTROPHE}expression de "
                      "nos salutations distinguées.",
           "default_sender": "Le délégué à la protection des données"},
    "en": {"reference": "Reference", "closing": "Yours faithfully,",
           "default_sender": "The data protection officer"},
}


@dataclass(frozen=True)
class RenderedLetter:
    lang: Lang
    subject: str
    html: str

    @property
    def text(self) -> str:
        return html_to_text(self.html)


@pass_context
def _date(context: Context, moment: Any) -> str:
    return format_date(moment, context["lang"])


@pass_context
def _category(context: Context, category: str) -> str:
    return category_label(category, context["lang"], context["f"].category_words)


@pass_context
def _categories(context: Context, categories: Iterable[str]) -> str:
    return "; ".join(_category(context, c) for c in categories)


@pass_context
def _basis(context: Context, basis: str) -> str:
    return legal_basis_label(basis, context["lang"])


def _environment() -> Environment:
    env = Environment(loader=FileSystemLoader(str(TEMPLATES_DIR)), autoescape=select_autoescape(["html"]),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(date=_date, category=_category, categories=_categories, basis=_basis)
    return env


ENVIRONMENT = _environment()


def render(facts: LetterFacts, lang: Lang) -> RenderedLetter:
    template = ENVIRONMENT.get_template(f"{facts.kind}.{lang}.html")
    values = {"f": facts, "lang": lang, "words": WORDS[lang], "cnil_url": CNIL_COMPLAINTS_URL,
              "cnil_address": CNIL_POSTAL_ADDRESS}
    subject = "".join(template.blocks["subject"](template.new_context(values))).strip()
    return RenderedLetter(lang=lang, subject=subject, html=template.render(values))


class _TextWriter(HTMLParser):
    """Our templates' HTML as plain text: paragraphs and headings apart, list items dashed, links
    followed by their address when their text is not already it; head and style dropped."""

    BLOCKS = ("p", "h1", "h2", "li", "blockquote", "ul")

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[tuple[str, list[str]]] = []
        self.current: tuple[str, list[str]] | None = None
        self.skipping = 0
        self.href: str | None = None
        self.link_text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("head", "style", "title"):
            self.skipping += 1
        elif tag in self.BLOCKS:
            self._close()
            self.current = (tag, [])
        elif tag == "br" and self.current is not None:
            self.current[1].append("\n")
        elif tag == "a":
            self.href, self.link_text = dict(attrs).get("href"), []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("head", "style", "title"):
            self.skipping -= 1
        elif tag in self.BLOCKS:
            self._close()
        elif tag == "a" and self.href and self.current is not None:
            if "".join(self.link_text).strip() != self.href:
                self.current[1].append(f" ({self.href})")
            self.href = None

    def handle_data(self, data: str) -> None:
        if self.skipping or self.current is None:
            return
        self.current[1].append(data)
        if self.href is not None:
            self.link_text.append(data)

    def _close(self) -> None:
        if self.current is not None:
            self.blocks.append(self.current)
        self.current = None

    def text(self) -> str:
        self._close()
        out: list[str] = []
        previous = ""
        for tag, parts in self.blocks:
            lines = [_ASCII_SPACES.sub(" ", line).strip() for line in "".join(parts).split("\n")]
            body = "\n".join(line for line in lines if line)
            if not body:
                continue
            if out:  # items of one list stay together; everything else is a paragraph apart
                out.append("\n" if tag == previous == "li" else "\n\n")
            previous = tag
            if tag == "li":
                out.append(_fill(body, TEXT_WIDTH, initial_indent="- ", subsequent_indent="  "))
            elif tag == "blockquote":
                out.append(_fill(body, TEXT_WIDTH, initial_indent="    ", subsequent_indent="    "))
            elif tag == "h1":
                out.append(f"{body}\n{'=' * min(len(body), TEXT_WIDTH)}")
            elif tag == "h2":
                out.append(f"{body}\n{'-' * min(len(body), TEXT_WIDTH)}")
            else:
                out.append("\n".join(_fill(line, TEXT_WIDTH) for line in body.split("\n")))
        return "".join(out) + "\n"


def _fill(text: str, width: int, initial_indent: str = "", subsequent_indent: str = "") -> str:
    # Never at a hyphen: request ids, system ids and article numbers stay whole.
    return textwrap.fill(text, width, initial_indent=initial_indent, subsequent_indent=subsequent_indent,
                         break_on_hyphens=False, break_long_words=False)


def html_to_text(html: str) -> str:
    writer = _TextWriter()
    writer.feed(html)
    writer.close()
    return writer.text()
