"""The HTTP intake, `POST /v1/erasure-requests`: bearer tokens per client (hashed at rest); the body
is an `ErasureRequested` exactly as `schemas/ErasureRequested.schema.json` describes it (identities
sealed with the intake public key); 202 with the request id and the deadline; the same request id
again gets the same answer; 422 names the field at fault, never its value; 401 without a valid token."""

from __future__ import annotations

import hashlib
import logging

import sqlalchemy as sa
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from pipeline.codec import now_utc
from pipeline.deadlines import due_at
from pipeline.desk.context import Desk, DeskDep
from pipeline.desk.errors import problem
from pipeline.ledger import receipts_table
from schemas import ErasureRequested
from schemas.codec import problem_details

log = logging.getLogger("pipeline.desk.app")  # the name operators know from the logs
INTAKE_PATH = "/v1/erasure-requests"
router = APIRouter()


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
        return problem(422, problem_details(exc, loc_prefix=("body",)))
    digest = hashlib.sha256(body).hexdigest()
    deadline = due_at(event.received_at)
    answer = {"request_id": event.request_id, "status": "accepted",
              "received_at": event.received_at.isoformat(), "due_at": deadline.isoformat()}
    with desk.ledger.writer.begin() as conn:
        known = conn.execute(sa.select(receipts_table).where(
            receipts_table.c.request_id == event.request_id)).first()
        if known is not None:
            if known.body_sha256 != digest:
                return problem(409, f"request_id {event.request_id} was already submitted with a "
                                    "different body: choose a new UUID for a new request")
            return JSONResponse(answer, status_code=202)
        conn.execute(receipts_table.insert().values(
            request_id=event.request_id, client=client, body_sha256=digest,
            received_at=event.received_at, due_at=deadline, accepted_at=now_utc()))
        try:
            desk.publisher.send(desk.requests_topic, event.request_id.encode(), body)
        except Exception as exc:  # the receipt rolls back: the client may retry as is
            log.error("intake: publishing %s failed (%s)", event.request_id, type(exc).__name__)
            raise HTTPException(503, "the broker did not take the request; retry later") from None
    log.info("intake: request %s accepted from client %s", event.request_id, client)
    return JSONResponse(answer, status_code=202)
