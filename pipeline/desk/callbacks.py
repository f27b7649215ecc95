"""OpenDSR status callbacks, `POST /opendsr/callbacks`: a processor's signed callback is verified
(domain, certificate, signature over the raw body) before the body is parsed; a final status
becomes that system's `ErasureOutcome` on the outcomes topic.

A callback answers one submission (`CallbackBinding`: the attempt that created the processor's
request). Before anything is published it is checked against the ledger: a system already final,
or a submission superseded since (an officer's retry, a re-drive), gets a 409 with the reason, so
a captured callback replayed later cannot decide a newer attempt."""

from __future__ import annotations

import logging

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response

from connectors.processors.opendsr_callbacks import CallbackBinding, CallbackRejected, verified_callback
from pipeline.codec import now_utc
from pipeline.desk.context import Desk, DeskDep
from pipeline.desk.errors import problem
from pipeline.ledger.views import SystemView
from schemas import FINAL_SYSTEM_STATUSES, ErasureOutcome, Evidence, OutcomeError
from schemas.codec import encode

log = logging.getLogger("pipeline.desk.app")  # the name operators know from the logs
router = APIRouter()
# Ledger events after which the processor is asked again, as a new submission.
NEW_SUBMISSION_KINDS = ("officer_retry", "redriven")


@router.post("/opendsr/callbacks", status_code=202, include_in_schema=False)
async def opendsr_callback(request: Request, desk: DeskDep) -> Response:
    """A processor's signed status callback: verified (domain, certificate, signature over the
    raw body) before the body is parsed; a final status becomes that system's outcome."""
    opendsr = desk.opendsr
    if opendsr is None:
        raise HTTPException(404, "no OpenDSR processor is configured")
    raw = await request.body()
    try:
        verified = verified_callback(request.headers, raw, opendsr.systems_by_domain, opendsr.trust,
                                     expected_callback_url=opendsr.callback_url,
                                     expected_controller_id=opendsr.controller_id)
    except CallbackRejected as exc:
        log.warning("opendsr: callback refused (%s)", type(exc).__name__)
        return problem(exc.http_status, "callback refused")
    domains = {d.lower(): s for d, s in opendsr.systems_by_domain.items()}
    system, request_id = domains[verified.processor_domain], verified.binding.request_id
    status = {"completed": "erased", "cancelled": "failed"}.get(str(verified.body["request_status"]))
    view = desk.ledger.request(request_id, now_utc())
    row = next((s for s in view.systems if s.system == system), None) if view else None
    if status is None or row is None:
        return Response(status_code=202)  # not final, or not ours: nothing to record
    refusal = _refusal(desk, system, row, verified.binding)
    if refusal is not None:
        log.warning("opendsr: %s callback refused: %s", system, refusal)
        return problem(409, refusal)
    outcome = ErasureOutcome(
        request_id=request_id, system=system, attempt=row.attempt, status=status,  # type: ignore[arg-type]
        evidence=Evidence(reference=f"OpenDSR callback: {verified.body['request_status']}"),
        error=OutcomeError(kind="permanent", message=f"{system}: the processor cancelled the request")
        if status == "failed" else None, occurred_at=now_utc())
    desk.publisher.send(opendsr.outcomes_topic, request_id.encode(), encode(outcome))
    return Response(status_code=202)


def _refusal(desk: Desk, system: str, row: SystemView, binding: CallbackBinding) -> str | None:
    """Why a final status must not be recorded for this system now, or None."""
    if row.status in FINAL_SYSTEM_STATUSES:
        return f"already final: {system} is {row.status} at attempt {row.attempt}"
    current = max((e.attempt or 1 for e in desk.ledger.events(binding.request_id)
                   if e.system == system and e.kind in NEW_SUBMISSION_KINDS), default=1)
    if binding.attempt < current:
        return (f"stale: the callback answers attempt {binding.attempt}, superseded by the new "
                f"submission of attempt {current}")
    if binding.attempt > row.attempt:
        return f"unknown attempt: the callback answers attempt {binding.attempt}, not made yet"
    return None
