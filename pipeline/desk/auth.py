"""Desk sessions and roles: who is logged in, who may act (officers, with the form's CSRF token),
and the login and logout routes.

The signed cookie carries a session id and the CSRF token; the session itself is a ledger row
(`Access.open_session`), so logging out, a new password or a removed account ends it at once, and
it ends anyway when idle or old (`DeskSecurity`). Every form, login and logout included, carries the
CSRF token, compared in constant time. Failed logins are throttled per account and per address.
"""

from __future__ import annotations

import math
import secrets

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from pipeline.codec import now_utc
from pipeline.desk.context import Desk, DeskDep
from pipeline.desk.render import page
from pipeline.desk.security import DeskSecurity
from pipeline.desk.throttle import LoginThrottle
from pipeline.ledger.accounts import User

router = APIRouter()
STALE_FORM = "stale form: reload the page and try again"


def security_of(request: Request) -> DeskSecurity:
    security: DeskSecurity = request.app.state.security
    return security


def current_user(desk: Desk, request: Request) -> User | None:
    session_id = request.session.get("sid")
    if not isinstance(session_id, str):
        return None
    security = security_of(request)
    user = desk.access.session_user(session_id, now_utc(), security.session_idle_s, security.session_max_s)
    if user is None:
        request.session.clear()  # revoked or expired: the cookie is worth nothing now
    return user


def require_user(desk: Desk, request: Request) -> User:
    user = current_user(desk, request)
    if user is None:
        raise HTTPException(401, "log in first")
    return user


def csrf_ok(request: Request, submitted: object) -> bool:
    expected = request.session.get("csrf")
    if not isinstance(expected, str) or not isinstance(submitted, str) or not submitted:
        return False
    return secrets.compare_digest(expected.encode(), submitted.encode())


async def require_officer(desk: Desk, request: Request) -> User:
    user = require_user(desk, request)
    if not user.is_officer:
        raise HTTPException(403, f"{user.name} is a viewer: only officers may act on requests")
    form = await request.form()
    if not csrf_ok(request, form.get("csrf")):
        raise HTTPException(403, STALE_FORM)
    return user


@router.get("/login", response_class=HTMLResponse, include_in_schema=False)
async def login_form(request: Request, desk: DeskDep, error: str | None = None) -> Response:
    return page(desk, request, "login.html", None, error=error)


def _throttle_keys(request: Request, username: str) -> dict[str, int]:
    """Throttle key -> failures allowed: the account named (known or not) and the client address."""
    security = security_of(request)
    address = request.client.host if request.client else "unknown"
    return {f"user:{username[:64]}": security.login_max_failures,
            f"address:{address}": security.login_max_failures_per_address}


@router.post("/login", include_in_schema=False)
async def login(request: Request, desk: DeskDep, username: str = Form(...), password: str = Form(...),
                csrf: str = Form("")) -> Response:
    if not csrf_ok(request, csrf):
        return page(desk, request, "login.html", None, status_code=403,
                    error="This form was stale: log in again")
    throttle: LoginThrottle = request.app.state.login_throttle
    keys = _throttle_keys(request, username)
    wait_s = throttle.retry_after_s(keys)
    if wait_s > 0:
        response = page(desk, request, "login.html", None, status_code=429,
                        error=f"Too many failed logins: try again in {math.ceil(wait_s)} s")
        response.headers["retry-after"] = str(math.ceil(wait_s))
        return response
    # scrypt takes a good part of a second: not on the event loop
    user = await run_in_threadpool(desk.access.authenticate, username, password)
    if user is None:
        throttle.failed(keys)
        return page(desk, request, "login.html", None, status_code=401,
                    error="Unknown user or wrong password")
    throttle.succeeded(f"user:{username[:64]}")
    session_id = desk.access.open_session(user.name, now_utc())
    request.session.clear()
    request.session["sid"] = session_id
    request.session["csrf"] = secrets.token_urlsafe(32)  # a new token for the new session
    return RedirectResponse("/", status_code=303)


@router.post("/logout", include_in_schema=False)
async def logout(request: Request, desk: DeskDep, csrf: str = Form("")) -> Response:
    if not csrf_ok(request, csrf):
        raise HTTPException(403, STALE_FORM)
    session_id = request.session.get("sid")
    if isinstance(session_id, str):
        desk.access.close_session(session_id)
    request.session.clear()
    return RedirectResponse("/login", status_code=303)
