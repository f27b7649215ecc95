"""Error answers: `{"detail": ...}` JSON for the API, the login page for a desk visitor without a session."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response


def problem(status: int, detail: Any, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=dict(headers or {}))


async def http_error(_: Request, exc: HTTPException) -> Response:
    return problem(exc.status_code, exc.detail, exc.headers)


async def to_login(request: Request, exc: HTTPException) -> Response:
    if request.url.path.startswith("/v1/"):
        return problem(401, exc.detail, exc.headers)
    return RedirectResponse("/login", status_code=303)


def add_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(HTTPException, http_error)  # type: ignore[arg-type]
    app.add_exception_handler(401, to_login)  # type: ignore[arg-type]
