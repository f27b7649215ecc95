"""A processor with no API: the task waits, `manual`, until a person confirms what was done.

The message to send is rendered from the system's template only when an officer
opens the request on the desk (the identities are opened with the request's data
key then); the ledger keeps no identity in clear, only whom to ask. The
confirmation is attributed and timestamped (`erasure confirm`, or the desk).
"""

from __future__ import annotations

import string

from pydantic import BaseModel, ConfigDict, Field, field_validator

from connectors.base import EraseResult, TaskContext
from schemas import Evidence, SubjectIdentities

PLACEHOLDERS = ("email", "phone", "user_id", "account_id", "customer_id", "request_id", "received_at",
                "due_at")
DEFAULT_TEMPLATE = (
    "Hello,\n\nUnder Article 17 GDPR, and as our processor (Article 28), please erase all personal "
    "data you hold about the person identified by {email}, and confirm by reply once done, "
    "stating what, if anything, you must keep and why.\nOur reference: {request_id} (received "
    "{received_at}, to be completed by {due_at}).\n"
)


class ManualSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    contact: str = Field(min_length=3, max_length=120, description="Whom to ask, e.g. dpo@vendor.example")
    message_template: str = Field(default=DEFAULT_TEMPLATE, min_length=10)

    @field_validator("message_template")
    @classmethod
    def _placeholders(cls, value: str) -> str:
        for _, name, _, _ in string.Formatter().parse(value):
            if name is not None and name not in PLACEHOLDERS:
                raise ValueError(f"unknown placeholder {{{name}}}; use {', '.join(PLACEHOLDERS)}")
        return value

    def render(self, subject: SubjectIdentities, request_id: str, received_at: str, due_at: str) -> str:
        values = dict.fromkeys(PLACEHOLDERS, "(not given)")
        for identity in subject.identities:
            values[identity.identity_type] = identity.identity_value
        values.update(request_id=request_id, received_at=received_at, due_at=due_at)
        return self.message_template.format(**values)


class ManualConnector:
    def __init__(self, system: str, settings: ManualSettings) -> None:
        self.system = system
        self.settings = settings

    def erase(self, subject: SubjectIdentities, context: TaskContext) -> EraseResult:
        return EraseResult(status="manual", evidence=Evidence(reference=f"ask {self.settings.contact}"))

    def check(self) -> str:
        return f"manual: confirmations from {self.settings.contact}"

    def close(self) -> None:
        return None
