"""The desk's pages: the home page (the officer's overview as charts, then the request list; filtered by
status, deadline and search, the list alone) and a request's page (who asked and when, the deadline, each
system's outcome and evidence, holds, the timeline)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from pipeline.codec import now_utc
from pipeline.desk.auth import require_user
from pipeline.desk.context import Desk, DeskDep
from pipeline.desk.overview_cache import DrawnOverview, OverviewCache
from pipeline.desk.records import timeline, view_or_404
from pipeline.desk.render import page
from pipeline.ledger import RequestView
from pipeline.manual_messages import manual_message

STATUSES = ["in_progress", "completed", "completed_with_holds", "needs_attention", "refused"]
router = APIRouter()


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def index(request: Request, desk: DeskDep, status: str | None = None, deadline: str | None = None,
                q: str | None = None, channel: str | None = None) -> Response:
    user = require_user(desk, request)
    now = now_utc()
    views = desk.ledger.list_requests(now, status=status or None, overdue=deadline == "overdue",
                                      due_soon=deadline == "due_soon", search=q or None,
                                      channel=channel or None)
    overview: DrawnOverview | None = None
    if not (status or deadline or q or channel):
        cache: OverviewCache = request.app.state.overview
        # Off the event loop, which also serves the intake: a drawing can take a second.
        overview = await run_in_threadpool(cache.get, now)
    return page(desk, request, "list.html", user, views=views, statuses=STATUSES, status=status,
                deadline=deadline, q=q or "", channel=channel, overview=overview)


def manual_messages(desk: Desk, request_id: str, view: RequestView) -> dict[str, tuple[str, str]]:
    """(contact, message) for each manual system's owner (identities included: officers only)."""
    messages = {}
    for s in view.systems:
        if s.status == "manual":
            message = manual_message(desk.ledger, desk.register, request_id, s.system)
            if message is not None:
                messages[s.system] = message
    return messages


@router.get("/requests/{request_id}", response_class=HTMLResponse, include_in_schema=False)
async def request_page(request: Request, request_id: str, desk: DeskDep,
                       notice: str | None = None) -> Response:
    user = require_user(desk, request)
    view = view_or_404(desk, request_id)
    position, head = desk.ledger.chain_head()
    categories = [r.category for r in desk.policy.rules] if desk.policy else []
    # only officers need, and see, the person's identities
    messages = manual_messages(desk, request_id, view) if user.is_officer else {}
    return page(desk, request, "request.html", user, view=view, events=timeline(desk, request_id),
                chain=(position, head), notice=notice, hold_categories=categories,
                manual_messages=messages,
                can_extend=view.status == "in_progress" and view.extension_months < 2)
