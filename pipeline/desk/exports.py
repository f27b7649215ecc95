"""Exports: a request's evidence as JSON, its printable certificate, and all requests as CSV (streamed)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse

from pipeline.codec import now_utc
from pipeline.deadlines import deadline_flag
from pipeline.desk.auth import require_user
from pipeline.desk.context import Desk, DeskDep
from pipeline.desk.records import timeline, view_or_404
from pipeline.desk.render import page
from pipeline.ledger import RequestView, requests_table

CSV_COLUMNS = ["request_id", "status", "received_at", "due_at", "completed_at", "on_time",
               "deadline_flag", "extension_months"]
EXPORT_CHUNK_ROWS = 2000  # rows fetched and written at a time
router = APIRouter()


def evidence(desk: Desk, view: RequestView) -> dict[str, Any]:
    position, head = desk.ledger.chain_head()
    return {
        "request_id": view.request_id, "subject_ref": view.subject_ref, "status": view.status,
        "channel": view.channel, "verification": view.verification,
        "received_at": view.received_at.isoformat(), "due_at": view.due_at.isoformat(),
        "extension_months": view.extension_months, "extension_reason": view.extension_reason,
        "completed_at": view.completed_at.isoformat() if view.completed_at else None,
        "on_time": view.on_time,
        "systems": [{"system": s.system, "status": s.status, "attempt": s.attempt, "evidence": s.evidence,
                     "holds": s.holds, "error": s.error} for s in view.systems],
        "timeline": [{**e, "at": e["at"].isoformat() if e["at"] else None}
                     for e in timeline(desk, view.request_id)],
        "ledger_chain_head": {"position": position, "hash": head,
                              "verified": desk.ledger.verify_chain() is None},
        "generated_at": now_utc().isoformat(),
    }


@router.get("/requests/{request_id}/evidence.json", include_in_schema=False)
async def evidence_json(request: Request, request_id: str, desk: DeskDep) -> Response:
    require_user(desk, request)
    body = json.dumps(evidence(desk, view_or_404(desk, request_id)), indent=2)
    return Response(body, media_type="application/json",
                    headers={"content-disposition": f'attachment; filename="evidence-{request_id}.json"'})


@router.get("/requests/{request_id}/certificate.html", response_class=HTMLResponse, include_in_schema=False)
async def certificate(request: Request, request_id: str, desk: DeskDep) -> Response:
    user = require_user(desk, request)
    view = view_or_404(desk, request_id)
    data = evidence(desk, view)
    response = page(desk, request, "certificate.html", user, view=view, data=data)
    response.headers["content-disposition"] = f'attachment; filename="certificate-{request_id}.html"'
    return response


def csv_rows(engine: sa.Engine, now: datetime) -> Iterator[str]:
    """Every request, newest first, as CSV lines: read through a server-side cursor a few thousand
    rows at a time and written as they come, so memory stays flat however large the ledger."""
    r = requests_table.c
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    query = (sa.select(r.request_id, r.status, r.received_at, r.due_at, r.completed_at, r.on_time,
                       r.extension_months)
             .order_by(r.received_at.desc(), r.request_id.desc()))
    with engine.connect() as conn:
        for chunk in conn.execution_options(yield_per=EXPORT_CHUNK_ROWS).execute(query).partitions():
            for v in chunk:
                flag = deadline_flag(v.due_at, now, v.status != "in_progress")
                writer.writerow([v.request_id, v.status, v.received_at.isoformat(), v.due_at.isoformat(),
                                 v.completed_at.isoformat() if v.completed_at else "", v.on_time,
                                 flag or "", v.extension_months or 0])
            yield out.getvalue()
            out.seek(0)
            out.truncate()
    if out.tell():
        yield out.getvalue()


@router.get("/export.csv", include_in_schema=False)
async def export_csv(request: Request, desk: DeskDep) -> Response:
    require_user(desk, request)
    # A sync generator: Starlette iterates it in its thread pool, off the event loop.
    return StreamingResponse(csv_rows(desk.ledger.engine, now_utc()), media_type="text/csv",
                             headers={"content-disposition": 'attachment; filename="erasure-requests.csv"'})
