"""OpenDSR status callbacks, `POST /opendsr/callbacks`: a processor's signed callback is verified
(domain, certificate, signature over the raw body) before the body is parsed; a final status
becomes that system's `ErasureOutcome` on the outcomes topic."""

from __future__ import annotations

import logging

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response

from connectors.processors.opendsr_callbacks import CallbackRejected, verify_callback
from pipeline.codec import now_utc
from pipeline.desk.context import DeskDep
from pipeline.desk.errors import problem
from schemas import ErasureOutcome, Evidence, OutcomeError
from schemas.codec import encode

log = logging.getLogger("pipeline.desk.app")  # the name operators know from the logs
router = APIRouter()


@router.post("/opendsr/callbacks", status_code=202, include_in_schema=False)
async def opendsr_callback(request: Request, desk: DeskDep) -> Response:
    """A processor's signed status callback: verified (domain, certificate, signature over the
    raw body) before the body is parsed; a final status becomes that system's outcome."""
    opendsr = desk.opendsr
    if opendsr is None:
        raise HTTPException(404, "no OpenDSR processor is configured")
    raw = await request.body()
    try:
        body = verify_callback(request.headers, raw, opendsr.systems_by_domain, opendsr.trust,
                               expected_callback_url=opendsr.callback_url)
    except CallbackRejected as exc:
        log.warning("opendsr: callback refused (%s)", type(exc).__name__)
        return problem(exc.http_status, "callback refused")
    domain = (request.headers.get("x-opendsr-processor-domain")
              or request.headers.get("x-opengdpr-processor-domain") or "")
    system, request_id = opendsr.systems_by_domain[domain], str(body.get("subject_request_id", ""))
    status = {"completed": "erased", "cancelled": "failed"}.get(str(body.get("request_status")))
    view = desk.ledger.request(request_id, now_utc())
    row = next((s for s in view.systems if s.system == system), None) if view else None
    if status is None or row is None:
        return Response(status_code=202)  # not final, or not ours: nothing to record
    outcome = ErasureOutcome(
        request_id=request_id, system=system, attempt=row.attempt, status=status,  # type: ignore[arg-type]
        evidence=Evidence(reference=f"OpenDSR callback: {body.get('request_status')}"),
        error=OutcomeError(kind="permanent", message=f"{system}: the processor cancelled the request")
        if status == "failed" else None, occurred_at=now_utc())
    desk.publisher.send(opendsr.outcomes_topic, request_id.encode(), encode(outcome))
    return Response(status_code=202)
