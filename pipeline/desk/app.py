"""The officer's desk and the HTTP intake, one FastAPI application (`erasure desk`).

Intake (`/v1/...`, `intake.py`): bearer tokens per client; the body is an `ErasureRequested`;
202 with the request id and the deadline. OpenDSR processors call back on `/opendsr/callbacks`
(`callbacks.py`).

Desk (HTML): officers and viewers log in (`auth.py`); requests filtered by status and deadline,
a request's page with its systems, holds and hash-chained timeline (`pages.py`); officers retry
failed systems, confirm manual ones, extend deadlines, refuse requests (`actions.py`); the letter to
the person, HTML or PDF (`letters.py`). Exports: evidence JSON,
a printable certificate, all requests as CSV (`exports.py`).

Operators (`metrics.py`, no login, no personal data): `/metrics` for Prometheus, computed from the
ledger at scrape time; `/healthz` (the process answers) and `/readyz` (the ledger answers).

`create_app` builds the `Desk` (`context.py`) the routes share and puts the routers together,
hardened as `DeskSecurity` (`security.py`) says: server-side sessions in a `Secure` cookie, login
throttling (`throttle.py`), security headers on every answer, errors included (`headers.py`), a
body cap on every route (checked before the body is read: a Content-Length over it is a 413 at
once). The OpenAPI
document is at `/openapi.json`; no Swagger UI is served (it would load scripts from a CDN).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from fastapi import FastAPI
from starlette.middleware.sessions import SessionMiddleware

from connectors.retention import RetentionPolicy
from pipeline import liveness
from pipeline.desk import actions, auth, callbacks, exports, intake, metrics, pages
from pipeline.desk import letters as letter_pages
from pipeline.desk.context import TEMPLATES, Desk, OpenDsrCallbacks, Publisher
from pipeline.desk.errors import add_error_handlers
from pipeline.desk.headers import HardenedFastAPI
from pipeline.desk.intake import INTAKE_PATH
from pipeline.desk.openapi import publish_intake_only
from pipeline.desk.overview_cache import OverviewCache
from pipeline.desk.pages import STATUSES
from pipeline.desk.security import DeskSecurity
from pipeline.desk.throttle import LoginThrottle
from pipeline.ledger import Ledger
from pipeline.ledger.accounts import Access
from pipeline.letters import LetterWriter
from pipeline.register import SystemsRegister

__all__ = ["INTAKE_PATH", "STATUSES", "TEMPLATES", "DeskSecurity", "OpenDsrCallbacks", "Publisher",
           "create_app"]

FORM_ROUTERS = (auth.router, pages.router, actions.router, exports.router, letter_pages.router)


Lifespan = Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]]


def _beating(heartbeat_file: Path | None) -> Lifespan:
    """A lifespan beating the heartbeat file each second while the event loop turns."""

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        beat = liveness.loop_beat(heartbeat_file, "desk")

        async def beating() -> None:
            while True:
                beat.beat()
                await asyncio.sleep(1.0)

        task = asyncio.create_task(beating())
        try:
            yield
        finally:
            task.cancel()

    return lifespan


def create_app(ledger: Ledger, access: Access, publisher: Publisher, policy: RetentionPolicy | None,
               session_secret: str, task_topic: Callable[[str], str], requests_topic: str,
               register: SystemsRegister | None = None, opendsr: OpenDsrCallbacks | None = None,
                 security: DeskSecurity | None = None, letters: LetterWriter | None = None,
                 heartbeat_file: Path | None = None) -> FastAPI:
    security = security or DeskSecurity()
    app = HardenedFastAPI(title="Erasure pipeline: intake and officer desk", version="1",
                  description="HTTP intake for backends in any language, and the compliance officer's desk.",
                  docs_url=None, redoc_url=None, lifespan=_beating(heartbeat_file))
    app.add_middleware(SessionMiddleware, secret_key=session_secret, same_site="strict",
                       session_cookie="erasure_desk", https_only=security.cookie_secure,
                       max_age=math.ceil(security.session_max_s))
    app.state.desk = Desk(ledger=ledger, access=access, publisher=publisher, policy=policy, register=register,
                          task_topic=task_topic, requests_topic=requests_topic, opendsr=opendsr)
    app.state.security = security
    app.state.letters = letters  # None: letters signed by default, Chromium at its default path
    app.state.metrics = metrics.metrics_registry(ledger)
    app.state.overview = OverviewCache(ledger.engine)  # the home page's charts
    app.state.login_throttle = LoginThrottle(security.login_lockout_s, security.login_lockout_cap_s)
    add_error_handlers(app)
    app.include_router(intake.router, max_body_size=security.intake_max_body_bytes)
    app.include_router(callbacks.router, max_body_size=security.opendsr_callback_max_body_bytes)
    for router in FORM_ROUTERS:
        app.include_router(router, max_body_size=security.form_max_body_bytes)
    app.include_router(metrics.router, max_body_size=security.form_max_body_bytes)
    publish_intake_only(app, intake.router)
    return app
