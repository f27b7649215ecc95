"""Exports: a request's evidence as JSON, its printable certificate, and all requests as CSV."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from pipeline.codec import now_utc
from pipeline.desk.auth import require_user
from pipeline.desk.context import Desk, DeskDep
from pipeline.desk.records import timeline, view_or_404
from pipeline.desk.render import page
from pipeline.ledger import RequestView

CSV_COLUMNS = ["request_id", "status", "received_at", "due_at", "completed_at", "on_time",
               "deadline_flag", "extension_months"]
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


@router.get("/export.csv", include_in_schema=False)
async def export_csv(request: Request, desk: DeskDep) -> Response:
    require_user(desk, request)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for v in desk.ledger.list_requests(now_utc(), limit=100_000):
        writer.writerow([v.request_id, v.status, v.received_at.isoformat(), v.due_at.isoformat(),
                         v.completed_at.isoformat() if v.completed_at else "", v.on_time,
                         v.deadline_flag or "", v.extension_months])
    return Response(out.getvalue(), media_type="text/csv",
                    headers={"content-disposition": 'attachment; filename="erasure-requests.csv"'})
