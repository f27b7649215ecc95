"""What the desk's routes share: the `Desk` (ledger, access, publisher, policy, register,
topics, templates), kept on `app.state` and handed to each route by the `DeskDep` dependency."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request
from fastapi.templating import Jinja2Templates

from connectors.processors.opendsr_callbacks import CallbackTrust
from connectors.retention import RetentionPolicy
from pipeline.evidence_text import evidence_parts
from pipeline.ledger import Ledger
from pipeline.ledger.accounts import Access
from pipeline.register import SystemsRegister
from pipeline.signing import Headers, Signer

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
TEMPLATES.env.filters["evidence_parts"] = evidence_parts


@dataclass
class OpenDsrCallbacks:
    """Who may call back: processor domain -> our system id; the trust anchors; our URL; the
    `controller_id` the processors know us by (a callback naming another is refused)."""

    systems_by_domain: dict[str, str]
    trust: CallbackTrust
    callback_url: str | None
    outcomes_topic: str
    controller_id: str


class Publisher:
    """What the desk needs of Kafka: publish a request (intake), a task (retry), an outcome (callback).

    Every record is signed with the desk's key; `send_signed(topic, key, value, headers)` is the producer.
    """

    def __init__(self, send_signed: Callable[[str, bytes, bytes, Headers], None], signer: Signer) -> None:
        self.send_signed = send_signed
        self.signer = signer

    def send(self, topic: str, key: bytes, value: bytes) -> None:
        self.send_signed(topic, key, value, self.signer.headers(topic, key, value))


@dataclass(frozen=True)
class Desk:
    """Everything the routes need, built once by `create_app`."""

    ledger: Ledger
    access: Access
    publisher: Publisher
    policy: RetentionPolicy | None
    register: SystemsRegister | None
    task_topic: Callable[[str], str]
    requests_topic: str
    opendsr: OpenDsrCallbacks | None
    templates: Jinja2Templates = TEMPLATES


async def desk_of(request: Request) -> Desk:
    """The FastAPI dependency: the `Desk` of the application serving `request`."""
    desk: Desk = request.app.state.desk
    return desk


DeskDep = Annotated[Desk, Depends(desk_of)]
