"""The desk's pages: the home page (the officer's overview as charts, then the request list; a
filtered list, by status, deadline, channel, system and search, shows the list alone, a page at a
time) and a request's page (who asked and when, the deadline, each system's outcome and evidence,
holds, the timeline)."""

from __future__ import annotations

from typing import get_args
from urllib.parse import urlencode

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from pipeline.codec import now_utc
from pipeline.desk.auth import require_user
from pipeline.desk.context import Desk, DeskDep
from pipeline.desk.overview_cache import DrawnOverview, OverviewCache
from pipeline.desk.records import timeline, view_or_404
from pipeline.desk.render import page
from pipeline.ledger import RequestView
from pipeline.ledger.listing import BadCursor, PageCursor, RequestFilter
from pipeline.manual_messages import manual_message
from schemas import ErasureRequested

STATUSES = ["in_progress", "completed", "completed_with_holds", "needs_attention", "refused"]
# The channels a request arrives by: the contract's, and the retention sweep's.
CHANNELS = list(get_args(ErasureRequested.model_fields["channel"].annotation))
PAGE_SIZE = 50
router = APIRouter()


def list_filters(status: str | None, deadline: str | None, q: str | None, channel: str | None,
                 system: str | None) -> RequestFilter:
    return RequestFilter(status=status or None, overdue=deadline == "overdue",
                         due_soon=deadline == "due_soon", search=q or None, channel=channel or None,
                         system=system or None)


def page_link(params: dict[str, str | None], cursor: PageCursor | None) -> str:
    """The list's URL with these filters, from `cursor` on (None: the first page)."""
    query = {k: v for k, v in params.items() if v}
    if cursor is not None:
        query["after"] = cursor.token()
    return "/?" + urlencode(query) if query else "/"


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def index(request: Request, desk: DeskDep, status: str | None = None, deadline: str | None = None,
                q: str | None = None, channel: str | None = None, system: str | None = None,
                after: str | None = None) -> Response:
    """The overview's charts (unfiltered first page), then the request list, newest first, a page of
    `PAGE_SIZE` at a time (keyset: `after`)."""
    user = require_user(desk, request)
    try:
        cursor = PageCursor.parse(after) if after else None
    except BadCursor as exc:
        raise HTTPException(400, str(exc)) from None
    now = now_utc()
    filters = list_filters(status, deadline, q, channel, system)
    found = desk.ledger.views.request_page(now, filters, cursor, limit=PAGE_SIZE)
    overview: DrawnOverview | None = None
    home = not (status or deadline or q or channel or system or cursor)
    if home:
        cache: OverviewCache = request.app.state.overview
        # Off the event loop, which also serves the intake: before the first drawing it waits up to
        # a tenth of a second for it.
        overview = await run_in_threadpool(cache.get, now)
    params = {"status": status, "deadline": deadline, "q": q, "channel": channel, "system": system}
    return page(desk, request, "list.html", user, views=found.views, statuses=STATUSES, status=status,
                deadline=deadline, q=q or "", channels=CHANNELS, channel=channel,
                systems=desk.register.ids if desk.register else None, system=system or "",
                matching=found.matching, paged=cursor is not None,
                first_page=page_link(params, None),
                next_page=page_link(params, found.next_cursor) if found.next_cursor else None,
                overview=overview, overview_pending=home and overview is None)


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
