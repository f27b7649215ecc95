"""Officers' actions on a request: retry a failed system, confirm a manual one, extend the deadline,
refuse the request (Art. 12(4), with its reason).
Each answers with a redirect to the request's page, with a notice when the ledger refused."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from pipeline.codec import now_utc
from pipeline.desk.auth import require_officer
from pipeline.desk.context import DeskDep
from pipeline.ledger import actions as ledger_actions
from schemas.codec import encode

router = APIRouter()


def act(request_id: str, run: Callable[[], Any]) -> Response:
    try:
        run()
    except ledger_actions.ActionError as exc:
        return RedirectResponse(f"/requests/{request_id}?notice={quote(str(exc)[:300])}", status_code=303)
    return RedirectResponse(f"/requests/{request_id}", status_code=303)


@router.post("/requests/{request_id}/systems/{system}/retry", include_in_schema=False)
async def retry(request: Request, request_id: str, system: str, desk: DeskDep) -> Response:
    user = await require_officer(desk, request)

    def run() -> None:
        task = ledger_actions.retry_system(desk.ledger, request_id, system, user.name, now_utc())
        desk.publisher.send(desk.task_topic(system), request_id.encode(), encode(task))
    return act(request_id, run)


@router.post("/requests/{request_id}/systems/{system}/confirm", include_in_schema=False)
async def confirm(request: Request, request_id: str, system: str, desk: DeskDep, outcome: str = Form(...),
                  category: str | None = Form(None), note: str | None = Form(None)) -> Response:
    user = await require_officer(desk, request)
    if outcome not in ("erased", "not_found", "held"):
        raise HTTPException(422, "outcome is erased, not_found or held")
    return act(request_id, lambda: ledger_actions.confirm_manual(
        desk.ledger, request_id, system, outcome, user.name, now_utc(), desk.policy,  # type: ignore[arg-type]
        category or None, note or None))


@router.post("/requests/{request_id}/extend", include_in_schema=False)
async def extend(request: Request, request_id: str, desk: DeskDep, months: int = Form(...),
                 reason: str = Form("")) -> Response:
    user = await require_officer(desk, request)
    return act(request_id, lambda: ledger_actions.extend_deadline(
        desk.ledger, request_id, months, reason, user.name, now_utc()))


@router.post("/requests/{request_id}/refuse", include_in_schema=False)
async def refuse(request: Request, request_id: str, desk: DeskDep, reason: str = Form("")) -> Response:
    user = await require_officer(desk, request)
    return act(request_id, lambda: ledger_actions.refuse(desk.ledger, request_id, reason, user.name,
                                                         now_utc()))
