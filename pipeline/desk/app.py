"""The officer's desk and the HTTP intake, one FastAPI application (`erasure desk`).

Intake (`/v1/...`): bearer tokens per client (hashed at rest); the body is an
`ErasureRequested` exactly as `schemas/ErasureRequested.schema.json` describes it
(identities sealed with the intake public key); 202 with the request id and the
deadline; the same request id again gets the same answer; 422 names the field at
fault, never its value; 401 without a valid token.

Desk (HTML): officers and viewers log in; requests filtered by status and deadline;
a request's page shows who asked and when, the deadline, each system's outcome with
its evidence, the holds with their legal basis, and the hash-chained timeline with
each action's author; officers retry failed systems, confirm manual ones, extend
deadlines. Exports: evidence JSON, a printable certificate, all requests as CSV.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError
from starlette.middleware.sessions import SessionMiddleware

from connectors.processors.opendsr_callbacks import CallbackRejected, CallbackTrust, verify_callback
from connectors.retention import RetentionPolicy
from pipeline.codec import now_utc
from pipeline.deadlines import due_at
from pipeline.ledger import Ledger, RequestView, actions, receipts_table, utc
from pipeline.ledger.accounts import Access, User
from pipeline.manual_messages import manual_message
from pipeline.register import SystemsRegister
from schemas import ErasureOutcome, ErasureRequested, ErasureTask, Evidence, OutcomeError
from schemas.codec import problem_details

log = logging.getLogger(__name__)
TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
INTAKE_PATH = "/v1/erasure-requests"
STATUSES = ["in_progress", "completed", "completed_with_holds", "needs_attention"]


@dataclass
class OpenDsrCallbacks:
    """Who may call back: processor domain -> our system id; the trust anchors; our URL."""

    systems_by_domain: dict[str, str]
    trust: CallbackTrust
    callback_url: str | None
    outcomes_topic: str


class Publisher:
    """What the desk needs of Kafka: publish a request (intake) and a task (retry)."""

    def __init__(self, send: Callable[[str, bytes, bytes], None]) -> None:
        self.send = send


def _problem(status: int, detail: Any, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=dict(headers or {}))


def create_app(ledger: Ledger, access: Access, publisher: Publisher, policy: RetentionPolicy | None,
               session_secret: str, task_topic: Callable[[str], str], requests_topic: str,
               register: SystemsRegister | None = None, opendsr: OpenDsrCallbacks | None = None) -> FastAPI:
    app = FastAPI(title="Erasure pipeline: intake and officer desk", version="1",
                  description="HTTP intake for backends in any language, and the compliance officer's desk.")
    app.add_middleware(SessionMiddleware, secret_key=session_secret, same_site="strict",
                       session_cookie="erasure_desk", https_only=False)

    # -- intake -------------------------------------------------------------------
    def client_of(request: Request) -> str:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        client = access.client_for(token.strip()) if scheme.lower() == "bearer" and token else None
        if client is None:
            raise HTTPException(401, "a valid bearer token is required (erasure clients add NAME)",
                                headers={"WWW-Authenticate": 'Bearer realm="erasure-intake"'})
        return client

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> Response:
        return _problem(exc.status_code, exc.detail, exc.headers)

    @app.post(INTAKE_PATH, status_code=202, tags=["intake"], summary="Submit a deletion request",
              responses={202: {"description": "Accepted: the request id and its legal deadline"},
                         401: {"description": "Missing or invalid bearer token"},
                         409: {"description": "This request id was used with another body"},
                         422: {"description": "The body does not match the contract; names the field"}},
              openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                  "schema": {"$ref": "#/components/schemas/ErasureRequested"}}}}})
    async def submit(request: Request) -> Response:
        client = client_of(request)
        body = await request.body()
        try:
            event = ErasureRequested.model_validate_json(body)
        except ValidationError as exc:
            return _problem(422, problem_details(exc, loc_prefix=("body",)))
        digest = hashlib.sha256(body).hexdigest()
        deadline = due_at(event.received_at)
        answer = {"request_id": event.request_id, "status": "accepted",
                  "received_at": event.received_at.isoformat(), "due_at": deadline.isoformat()}
        with ledger.writer.begin() as conn:
            known = conn.execute(sa.select(receipts_table).where(
                receipts_table.c.request_id == event.request_id)).first()
            if known is not None:
                if known.body_sha256 != digest:
                    return _problem(409, f"request_id {event.request_id} was already submitted with a "
                                         "different body: choose a new UUID for a new request")
                return JSONResponse(answer, status_code=202)
            conn.execute(receipts_table.insert().values(
                request_id=event.request_id, client=client, body_sha256=digest,
                received_at=event.received_at, due_at=deadline, accepted_at=now_utc()))
            try:
                publisher.send(requests_topic, event.request_id.encode(), body)
            except Exception as exc:  # the receipt rolls back: the client may retry as is
                log.error("intake: publishing %s failed (%s)", event.request_id, type(exc).__name__)
                raise HTTPException(503, "the broker did not take the request; retry later") from None
        log.info("intake: request %s accepted from client %s", event.request_id, client)
        return JSONResponse(answer, status_code=202)

    @app.post("/opendsr/callbacks", status_code=202, include_in_schema=False)
    async def opendsr_callback(request: Request) -> Response:
        """A processor's signed status callback: verified (domain, certificate, signature over the
        raw body) before the body is parsed; a final status becomes that system's outcome."""
        if opendsr is None:
            raise HTTPException(404, "no OpenDSR processor is configured")
        raw = await request.body()
        try:
            body = verify_callback(request.headers, raw, opendsr.systems_by_domain, opendsr.trust,
                                   expected_callback_url=opendsr.callback_url)
        except CallbackRejected as exc:
            log.warning("opendsr: callback refused (%s)", type(exc).__name__)
            return _problem(exc.http_status, "callback refused")
        domain = (request.headers.get("x-opendsr-processor-domain")
                  or request.headers.get("x-opengdpr-processor-domain") or "")
        system, request_id = opendsr.systems_by_domain[domain], str(body.get("subject_request_id", ""))
        status = {"completed": "erased", "cancelled": "failed"}.get(str(body.get("request_status")))
        view = ledger.request(request_id, now_utc())
        row = next((s for s in view.systems if s.system == system), None) if view else None
        if status is None or row is None:
            return Response(status_code=202)  # not final, or not ours: nothing to record
        outcome = ErasureOutcome(
            request_id=request_id, system=system, attempt=row.attempt, status=status,  # type: ignore[arg-type]
            evidence=Evidence(reference=f"OpenDSR callback: {body.get('request_status')}"),
            error=OutcomeError(kind="permanent", message=f"{system}: the processor cancelled the request")
            if status == "failed" else None, occurred_at=now_utc())
        publisher.send(opendsr.outcomes_topic, request_id.encode(),
                       outcome.model_dump_json(exclude_none=True).encode())
        return Response(status_code=202)

    def custom_openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        from fastapi.openapi.utils import get_openapi

        schema = get_openapi(title=app.title, version=app.version, description=app.description,
                             routes=[r for r in app.routes if getattr(r, "path", "").startswith("/v1/")])
        contract = ErasureRequested.model_json_schema(ref_template="#/components/schemas/{model}")
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.update(contract.pop("$defs", {}))
        components["ErasureRequested"] = contract
        schema["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        schema["security"] = [{"bearer": []}]
        app.openapi_schema = schema
        return schema

    app.openapi = custom_openapi  # type: ignore[method-assign]

    # -- desk: sessions and roles -------------------------------------------------
    def current_user(request: Request) -> User | None:
        name = request.session.get("user")
        return access.user(name) if isinstance(name, str) else None

    def require_user(request: Request) -> User:
        user = current_user(request)
        if user is None:
            raise HTTPException(401, "log in first")
        return user

    async def require_officer(request: Request) -> User:
        user = require_user(request)
        if not user.is_officer:
            raise HTTPException(403, f"{user.name} is a viewer: only officers may act on requests")
        form = await request.form()
        if not request.session.get("csrf") or form.get("csrf") != request.session.get("csrf"):
            raise HTTPException(403, "stale form: reload the page and try again")
        return user

    def page(request: Request, name: str, user: User | None, status_code: int = 200,
             **context: Any) -> Response:
        if "csrf" not in request.session:
            request.session["csrf"] = secrets.token_urlsafe(16)
        return TEMPLATES.TemplateResponse(request, name, {"user": user, "csrf": request.session["csrf"],
                                                          **context}, status_code=status_code)

    @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
    async def login_form(request: Request, error: str | None = None) -> Response:
        return page(request, "login.html", None, error=error)

    @app.post("/login", include_in_schema=False)
    async def login(request: Request, username: str = Form(...), password: str = Form(...)) -> Response:
        user = access.authenticate(username, password)
        if user is None:
            return page(request, "login.html", None, status_code=401,
                        error="Unknown user or wrong password")
        request.session.clear()
        request.session["user"] = user.name
        request.session["csrf"] = secrets.token_urlsafe(16)
        return RedirectResponse("/", status_code=303)

    @app.post("/logout", include_in_schema=False)
    async def logout(request: Request) -> Response:
        request.session.clear()
        return RedirectResponse("/login", status_code=303)

    @app.exception_handler(401)
    async def to_login(request: Request, exc: HTTPException) -> Response:
        if request.url.path.startswith("/v1/"):
            return _problem(401, exc.detail, exc.headers)
        return RedirectResponse("/login", status_code=303)

    # -- desk: views ----------------------------------------------------------------
    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index(request: Request, status: str | None = None, deadline: str | None = None,
                    q: str | None = None) -> Response:
        user = require_user(request)
        views = ledger.list_requests(now_utc(), status=status or None, overdue=deadline == "overdue",
                                     due_soon=deadline == "due_soon", search=q or None)
        return page(request, "list.html", user, views=views, statuses=STATUSES, status=status,
                    deadline=deadline, q=q or "")

    def view_or_404(request_id: str) -> RequestView:
        view = ledger.request(request_id, now_utc())
        if view is None:
            raise HTTPException(404, f"no request {request_id}")
        return view

    def timeline(request_id: str) -> list[dict[str, Any]]:
        items = []
        for event in ledger.events(request_id):
            payload = json.loads(event.payload)
            items.append({"position": event.position, "at": utc(event.recorded_at), "kind": event.kind,
                          "system": event.system, "status": event.status, "attempt": event.attempt,
                          "author": payload.get("author") if isinstance(payload, dict) else None,
                          "reason": payload.get("reason") if isinstance(payload, dict) else None,
                          "hash": event.hash})
        return items

    @app.get("/requests/{request_id}", response_class=HTMLResponse, include_in_schema=False)
    async def request_page(request: Request, request_id: str, notice: str | None = None) -> Response:
        user = require_user(request)
        view = view_or_404(request_id)
        position, head = ledger.chain_head()
        categories = [r.category for r in policy.rules] if policy else []
        messages = {}
        if user.is_officer:  # only officers need, and see, the person's identities
            for s in view.systems:
                if s.status == "manual":
                    message = manual_message(ledger, register, request_id, s.system)
                    if message is not None:
                        messages[s.system] = message
        return page(request, "request.html", user, view=view, events=timeline(request_id),
                    chain=(position, head), notice=notice, hold_categories=categories,
                    manual_messages=messages,
                    can_extend=view.status == "in_progress" and view.extension_months < 2)

    def act(request_id: str, run: Callable[[], Any]) -> Response:
        try:
            run()
        except actions.ActionError as exc:
            return RedirectResponse(f"/requests/{request_id}?notice={_quote(str(exc))}", status_code=303)
        return RedirectResponse(f"/requests/{request_id}", status_code=303)

    @app.post("/requests/{request_id}/systems/{system}/retry", include_in_schema=False)
    async def retry(request: Request, request_id: str, system: str) -> Response:
        user = await require_officer(request)

        def run() -> None:
            task = actions.retry_system(ledger, request_id, system, user.name, now_utc())
            publisher.send(task_topic(system), request_id.encode(), _encode(task))
        return act(request_id, run)

    @app.post("/requests/{request_id}/systems/{system}/confirm", include_in_schema=False)
    async def confirm(request: Request, request_id: str, system: str, outcome: str = Form(...),
                      category: str | None = Form(None), note: str | None = Form(None)) -> Response:
        user = await require_officer(request)
        if outcome not in ("erased", "not_found", "held"):
            raise HTTPException(422, "outcome is erased, not_found or held")
        return act(request_id, lambda: actions.confirm_manual(
            ledger, request_id, system, outcome, user.name, now_utc(), policy,  # type: ignore[arg-type]
            category or None, note or None))

    @app.post("/requests/{request_id}/extend", include_in_schema=False)
    async def extend(request: Request, request_id: str, months: int = Form(...),
                     reason: str = Form("")) -> Response:
        user = await require_officer(request)
        return act(request_id, lambda: actions.extend_deadline(
            ledger, request_id, months, reason, user.name, now_utc()))

    # -- exports -------------------------------------------------------------------------
    def evidence(view: RequestView) -> dict[str, Any]:
        position, head = ledger.chain_head()
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
                         for e in timeline(view.request_id)],
            "ledger_chain_head": {"position": position, "hash": head,
                                  "verified": ledger.verify_chain() is None},
            "generated_at": now_utc().isoformat(),
        }

    @app.get("/requests/{request_id}/evidence.json", include_in_schema=False)
    async def evidence_json(request: Request, request_id: str) -> Response:
        require_user(request)
        body = json.dumps(evidence(view_or_404(request_id)), indent=2)
        return Response(body, media_type="application/json",
                        headers={"content-disposition": f'attachment; filename="evidence-{request_id}.json"'})

    @app.get("/requests/{request_id}/certificate.html", response_class=HTMLResponse, include_in_schema=False)
    async def certificate(request: Request, request_id: str) -> Response:
        user = require_user(request)
        view = view_or_404(request_id)
        data = evidence(view)
        response = page(request, "certificate.html", user, view=view, data=data)
        response.headers["content-disposition"] = f'attachment; filename="certificate-{request_id}.html"'
        return response

    @app.get("/export.csv", include_in_schema=False)
    async def export_csv(request: Request) -> Response:
        require_user(request)
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["request_id", "status", "received_at", "due_at", "completed_at", "on_time",
                         "deadline_flag", "extension_months"])
        for v in ledger.list_requests(now_utc(), limit=100_000):
            writer.writerow([v.request_id, v.status, v.received_at.isoformat(), v.due_at.isoformat(),
                             v.completed_at.isoformat() if v.completed_at else "", v.on_time,
                             v.deadline_flag or "", v.extension_months])
        return Response(out.getvalue(), media_type="text/csv",
                        headers={"content-disposition": 'attachment; filename="erasure-requests.csv"'})

    return app


def _encode(task: ErasureTask) -> bytes:
    return task.model_dump_json(exclude_none=True).encode()


def _quote(text: str) -> str:
    from urllib.parse import quote

    return quote(text[:300])

