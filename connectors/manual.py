"""A system with no API: the task waits, `manual`, until a person confirms what was done.

The instructions say whom to ask and how (never who the person is: the officer
opens the request to see that); the confirmation is attributed and timestamped
in the ledger (`erasure confirm`, or the dashboard).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from connectors.base import EraseResult, TaskContext
from schemas import Evidence, SubjectIdentities


class ManualSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    instructions: str = Field(min_length=1, max_length=200,
                              description="Whom to ask and how, e.g. 'e-mail dpo@vendor.example'")


class ManualConnector:
    def __init__(self, system: str, settings: ManualSettings) -> None:
        self.system = system
        self.settings = settings

    def erase(self, subject: SubjectIdentities, context: TaskContext) -> EraseResult:
        return EraseResult(status="manual", evidence=Evidence(reference=self.settings.instructions))

    def close(self) -> None:
        return None
