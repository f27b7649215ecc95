"""Letters to the person (GDPR Art. 12(3), 12(4), 17(3), 19), rendered from the ledger when needed.

`facts` reads what a letter states from the ledger (and the register's names); `render` turns it into
HTML with the Jinja2 templates of `templates/` (completion, extension, refusal; French and English)
and plain text; `pdf` prints the HTML with Chromium; `event` is the `erasure.letter` the notification
webhook delivers. `LetterWriter` puts them together. No letter is stored.
"""

from pipeline.letters.event import ErasureLetter, LetterBody
from pipeline.letters.facts import LETTER_KINDS, LetterError, LetterFacts, LetterKind, default_kind
from pipeline.letters.labels import LANGS, Lang
from pipeline.letters.pdf import PdfError
from pipeline.letters.render import RenderedLetter, html_to_text, render
from pipeline.letters.writer import Format, LetterWriter

__all__ = [
    "LANGS",
    "LETTER_KINDS",
    "ErasureLetter",
    "Format",
    "Lang",
    "LetterBody",
    "LetterError",
    "LetterFacts",
    "LetterKind",
    "LetterWriter",
    "PdfError",
    "RenderedLetter",
    "default_kind",
    "html_to_text",
    "render",
]
