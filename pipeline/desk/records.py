"""What the desk reads of a request in the ledger: its view (or 404) and its hash-chained timeline."""

from __future__ import annotations

import json
from typing import Any

from fastapi import HTTPException

from pipeline.codec import now_utc
from pipeline.desk.context import Desk
from pipeline.ledger import RequestView, utc
from pipeline.ledger.views import note_text


def view_or_404(desk: Desk, request_id: str) -> RequestView:
    view = desk.ledger.request(request_id, now_utc())
    if view is None:
        raise HTTPException(404, f"no request {request_id}")
    return view


def timeline(desk: Desk, request_id: str) -> list[dict[str, Any]]:
    items = []
    notes = desk.ledger.views.notes(request_id)
    for event in desk.ledger.events(request_id):
        payload = json.loads(event.payload)
        items.append({"position": event.position, "at": utc(event.recorded_at), "kind": event.kind,
                      "system": event.system, "status": event.status, "attempt": event.attempt,
                      "author": payload.get("author") if isinstance(payload, dict) else None,
                      "reason": note_text(payload, notes),
                      "hash": event.hash})
    return items
