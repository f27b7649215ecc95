"""The letter to the person, from the desk: `/requests/{id}/letter` (HTML, as the person reads it) and
`/requests/{id}/letter.pdf` (printed by Chromium), in French or English, with the recipients informed
when the person asked for them (`recipients=1`). Rendered from the ledger at each request, never
stored. A request that owes no letter yet sends the officer back to its page with the reason."""

from __future__ import annotations

import asyncio
from typing import Literal
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from pipeline.codec import now_utc
from pipeline.desk.auth import require_user
from pipeline.desk.context import Desk, DeskDep
from pipeline.desk.headers import style_hashes
from pipeline.letters import LetterError, LetterKind, LetterWriter, PdfError, RenderedLetter
from pipeline.letters.render import TEMPLATES_DIR

router = APIRouter()
# The letter is a document of its own: its one inline style, and nothing else, not even the desk's.
LETTER_CSP = "; ".join(["default-src 'none'", f"style-src {' '.join(style_hashes(TEMPLATES_DIR))}",
                        "base-uri 'none'", "form-action 'none'", "frame-ancestors 'none'"])


def writer_of(request: Request, desk: Desk) -> LetterWriter:
    """The writer `create_app` was given (sender, Chromium), else one from the desk's register."""
    writer = getattr(request.app.state, "letters", None)
    return writer if isinstance(writer, LetterWriter) else LetterWriter(desk.register, desk.policy)


def _render(request: Request, desk: Desk, request_id: str, lang: Literal["fr", "en"],
            kind: LetterKind | None, recipients: bool) -> RenderedLetter | Response:
    if desk.ledger.request(request_id, now_utc()) is None:
        raise HTTPException(404, f"no request {request_id}")
    try:
        return writer_of(request, desk).letter(desk.ledger, request_id, lang, now_utc(), kind, recipients)
    except LetterError as exc:
        return RedirectResponse(f"/requests/{request_id}?notice={quote(str(exc)[:300])}", status_code=303)


@router.get("/requests/{request_id}/letter", response_class=HTMLResponse, include_in_schema=False)
async def letter_html(request: Request, request_id: str, desk: DeskDep, lang: Literal["fr", "en"] = "fr",
                      kind: LetterKind | None = None, recipients: bool = False) -> Response:
    require_user(desk, request)
    letter = _render(request, desk, request_id, lang, kind, recipients)
    if isinstance(letter, Response):
        return letter
    return HTMLResponse(letter.html, headers={"content-security-policy": LETTER_CSP})


@router.get("/requests/{request_id}/letter.pdf", include_in_schema=False)
async def letter_pdf(request: Request, request_id: str, desk: DeskDep, lang: Literal["fr", "en"] = "fr",
                     kind: LetterKind | None = None, recipients: bool = False) -> Response:
    require_user(desk, request)
    letter = _render(request, desk, request_id, lang, kind, recipients)
    if isinstance(letter, Response):
        return letter
    try:  # Chromium prints in a thread of its own: the desk keeps answering meanwhile
        pdf = await asyncio.to_thread(writer_of(request, desk).document, letter, "pdf")
    except PdfError as exc:
        raise HTTPException(503, str(exc)) from None
    return Response(pdf, media_type="application/pdf", headers={
        "content-disposition": f'attachment; filename="letter-{request_id}-{lang}.pdf"'})
