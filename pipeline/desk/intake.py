"""The HTTP intake, `POST /v1/erasure-requests`: bearer tokens per client (hashed at rest); the body
is an `ErasureRequested` exactly as `schemas/ErasureRequested.schema.json` describes it (identities
sealed with the intake public key); 202 with the request id and the deadline; the same request id
again, from the same client, gets the same answer; 422 names the field at fault, never its value
(and never the name of a key the contract does not define); 401 without a valid token.

The client sets the legal clock, so `received_at` must be recent (`DeskSecurity.intake_max_age_s`)
and not in the future (beyond `intake_max_clock_skew_s`); `subject_ref`, which travels in clear,
must be a pseudonym of the router's form, never an identity. A receipt belongs to the client that
made it: another client's request id is refused as a conflict, without telling whose it is.

The 202 is as durable as the ledger, not the broker: the request goes into the intake's outbox
(`pipeline.ledger.outbox`) in the receipt's transaction, and is published after the answer; when the
broker does not take it (away, or restarted and lost it), the stream worker's relay publishes it
again until the router has planned it. So the intake answers while the broker is down."""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.background import BackgroundTask

from pipeline.codec import now_utc
from pipeline.crypto import SUBJECT_REF_PATTERN
from pipeline.deadlines import due_at
from pipeline.desk.context import Desk, DeskDep
from pipeline.desk.errors import problem
from pipeline.desk.security import DeskSecurity
from pipeline.ledger import outbox, receipts_table
from schemas import ErasureRequested
from schemas.codec import problem_details
from schemas.models import RETENTION_CHANNEL

log = logging.getLogger("pipeline.desk.app")  # the name operators know from the logs
INTAKE_PATH = "/v1/erasure-requests"
# The relay publishes a request the desk did not manage to publish after this long.
OUTBOX_FIRST_CHECK_S = 10.0
CONFLICT = ("request_id {} was already submitted with a different body, or by another client: "
            "choose a new UUID for a new request")
router = APIRouter()


def known_fields_only(problems: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A key the contract does not define is reported at its parent, its name not echoed back."""
    return [{**p, "loc": p["loc"][:-1], "msg": "a field the contract does not define: remove it"}
            if p["type"] == "extra_forbidden" else p for p in problems]


def out_of_bounds(event: ErasureRequested, now: datetime, security: DeskSecurity) -> list[dict[str, Any]]:
    """What the contract cannot say: a recent `received_at`, a pseudonymous `subject_ref`."""
    problems = []
    if event.received_at > now + timedelta(seconds=security.intake_max_clock_skew_s):
        problems.append({"loc": ["body", "received_at"], "type": "received_at_future",
                         "msg": "received_at is in the future: send when the person asked, with its offset"})
    elif event.received_at < now - timedelta(seconds=security.intake_max_age_s):
        days = round(security.intake_max_age_s / 86400)
        problems.append({"loc": ["body", "received_at"], "type": "received_at_too_old",
                         "msg": f"received_at is more than {days} days ago: submit requests as they arrive"})
    if event.channel == RETENTION_CHANNEL:
        problems.append({"loc": ["body", "channel"], "type": "channel_reserved",
                         "msg": "channel retention is reserved for `erasure sweep` (the site's own "
                                "retention rules); a person's request uses contact_form, email, http_api, "
                                "postal or other"})
    if event.subject_ref is not None and not SUBJECT_REF_PATTERN.fullmatch(event.subject_ref):
        problems.append({"loc": ["body", "subject_ref"], "type": "subject_ref_pattern",
                         "msg": "subject_ref is a pseudonym (sr_ and 32 hex digits), never an identity: "
                                "leave it out"})
    return problems


def client_of(desk: Desk, request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    client = desk.access.client_for(token.strip()) if scheme.lower() == "bearer" and token else None
    if client is None:
        raise HTTPException(401, "a valid bearer token is required (erasure clients add NAME)",
                            headers={"WWW-Authenticate": 'Bearer realm="erasure-intake"'})
    return client


@router.post(INTAKE_PATH, status_code=202, tags=["intake"], summary="Submit a deletion request",
             responses={202: {"description": "Accepted: the request id and its legal deadline"},
                        401: {"description": "Missing or invalid bearer token"},
                        409: {"description": "This request id was used with another body"},
                        422: {"description": "The body does not match the contract; names the field"}},
             openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                 "schema": {"$ref": "#/components/schemas/ErasureRequested"}}}}})
async def submit(request: Request, desk: DeskDep) -> Response:
    client = client_of(desk, request)
    body = await request.body()
    try:
        event = ErasureRequested.model_validate_json(body)
    except ValidationError as exc:
        return problem(422, known_fields_only(problem_details(exc, loc_prefix=("body",))))
    bounds = out_of_bounds(event, now_utc(), request.app.state.security)
    if bounds:
        return problem(422, bounds)
    digest = hashlib.sha256(body).hexdigest()
    deadline = due_at(event.received_at)
    answer = {"request_id": event.request_id, "status": "accepted",
              "received_at": event.received_at.isoformat(), "due_at": deadline.isoformat()}
    with desk.ledger.writer.begin() as conn:
        known = conn.execute(sa.select(receipts_table).where(
            receipts_table.c.request_id == event.request_id)).first()
        if known is not None:
            # Another client's receipt is neither read nor overwritten; the answer does not say whose.
            if known.client != client or known.body_sha256 != digest:
                return problem(409, CONFLICT.format(event.request_id))
            return JSONResponse(answer, status_code=202)
        accepted_at = now_utc()
        conn.execute(receipts_table.insert().values(
            request_id=event.request_id, client=client, body_sha256=digest,
            received_at=event.received_at, due_at=deadline, accepted_at=accepted_at))
        outbox.add(conn, event.request_id, body, accepted_at, OUTBOX_FIRST_CHECK_S)
    log.info("intake: request %s accepted from client %s", event.request_id, client)
    return JSONResponse(answer, status_code=202,
                        background=BackgroundTask(publish_accepted, desk, event.request_id, body))


def publish_accepted(desk: Desk, request_id: str, body: bytes) -> None:
    """Publish a request just accepted (after the answer); the outbox's relay does it otherwise."""
    try:
        desk.publisher.send(desk.requests_topic, request_id.encode(), body)
    except Exception as exc:  # it is in the outbox: the relay publishes it when the broker is back
        log.warning("intake: request %s not published yet (%s); it waits in the outbox", request_id,
                    type(exc).__name__)
        return
    outbox.Outbox(desk.ledger.engine, desk.ledger.writer).published([request_id], now_utc())
