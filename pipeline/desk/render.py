"""Desk pages: a template rendered with the user and the session's CSRF token."""

from __future__ import annotations

import secrets
from typing import Any

from fastapi import Request
from fastapi.responses import Response

from pipeline.desk.context import Desk
from pipeline.ledger.accounts import User


def page(desk: Desk, request: Request, name: str, user: User | None, status_code: int = 200,
         **context: Any) -> Response:
    if "csrf" not in request.session:
        request.session["csrf"] = secrets.token_urlsafe(32)
    return desk.templates.TemplateResponse(request, name, {"user": user, "csrf": request.session["csrf"],
                                                           **context}, status_code=status_code)
