"""Desk sessions and roles: who is logged in, who may act (officers, with the form's CSRF token),
and the login and logout routes."""

from __future__ import annotations

import secrets

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from pipeline.desk.context import Desk, DeskDep
from pipeline.desk.render import page
from pipeline.ledger.accounts import User

router = APIRouter()


def current_user(desk: Desk, request: Request) -> User | None:
    name = request.session.get("user")
    return desk.access.user(name) if isinstance(name, str) else None


def require_user(desk: Desk, request: Request) -> User:
    user = current_user(desk, request)
    if user is None:
        raise HTTPException(401, "log in first")
    return user


async def require_officer(desk: Desk, request: Request) -> User:
    user = require_user(desk, request)
    if not user.is_officer:
        raise HTTPException(403, f"{user.name} is a viewer: only officers may act on requests")
    form = await request.form()
    if not request.session.get("csrf") or form.get("csrf") != request.session.get("csrf"):
        raise HTTPException(403, "stale form: reload the page and try again")
    return user


@router.get("/login", response_class=HTMLResponse, include_in_schema=False)
async def login_form(request: Request, desk: DeskDep, error: str | None = None) -> Response:
    return page(desk, request, "login.html", None, error=error)


@router.post("/login", include_in_schema=False)
async def login(request: Request, desk: DeskDep, username: str = Form(...),
                password: str = Form(...)) -> Response:
    user = desk.access.authenticate(username, password)
    if user is None:
        return page(desk, request, "login.html", None, status_code=401,
                    error="Unknown user or wrong password")
    request.session.clear()
    request.session["user"] = user.name
    request.session["csrf"] = secrets.token_urlsafe(16)
    return RedirectResponse("/", status_code=303)


@router.post("/logout", include_in_schema=False)
async def logout(request: Request) -> Response:
    request.session.clear()
    return RedirectResponse("/login", status_code=303)
