"""The officer's desk and the HTTP intake, one FastAPI application (`erasure desk`).

Intake (`/v1/...`, `intake.py`): bearer tokens per client; the body is an `ErasureRequested`;
202 with the request id and the deadline. OpenDSR processors call back on `/opendsr/callbacks`
(`callbacks.py`).

Desk (HTML): officers and viewers log in (`auth.py`); requests filtered by status and deadline,
a request's page with its systems, holds and hash-chained timeline (`pages.py`); officers retry
failed systems, confirm manual ones, extend deadlines (`actions.py`). Exports: evidence JSON,
a printable certificate, all requests as CSV (`exports.py`).

`create_app` builds the `Desk` (`context.py`) the routes share and puts the routers together.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI
from starlette.middleware.sessions import SessionMiddleware

from connectors.retention import RetentionPolicy
from pipeline.desk import actions, auth, callbacks, exports, intake, pages
from pipeline.desk.context import TEMPLATES, Desk, OpenDsrCallbacks, Publisher
from pipeline.desk.errors import add_error_handlers
from pipeline.desk.intake import INTAKE_PATH
from pipeline.desk.openapi import publish_intake_only
from pipeline.desk.pages import STATUSES
from pipeline.ledger import Ledger
from pipeline.ledger.accounts import Access
from pipeline.register import SystemsRegister

__all__ = ["INTAKE_PATH", "STATUSES", "TEMPLATES", "OpenDsrCallbacks", "Publisher", "create_app"]

ROUTERS = (intake.router, callbacks.router, auth.router, pages.router, actions.router, exports.router)


def create_app(ledger: Ledger, access: Access, publisher: Publisher, policy: RetentionPolicy | None,
               session_secret: str, task_topic: Callable[[str], str], requests_topic: str,
               register: SystemsRegister | None = None, opendsr: OpenDsrCallbacks | None = None) -> FastAPI:
    app = FastAPI(title="Erasure pipeline: intake and officer desk", version="1",
                  description="HTTP intake for backends in any language, and the compliance officer's desk.")
    app.add_middleware(SessionMiddleware, secret_key=session_secret, same_site="strict",
                       session_cookie="erasure_desk", https_only=False)
    app.state.desk = Desk(ledger=ledger, access=access, publisher=publisher, policy=policy, register=register,
                          task_topic=task_topic, requests_topic=requests_topic, opendsr=opendsr)
    add_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    publish_intake_only(app, intake.router)
    return app
