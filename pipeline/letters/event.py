"""The letter as the contact-form backend receives it on the notification webhook: `erasure.letter`.

Signed like every notification (`X-Erasure-Signature`), it carries the letter in French and in
English, as a subject, plain text and HTML, so the backend can e-mail it in the person's language. It
names the request by its id and carries no identity: the backend knows whom to write to from its own
record of that request id. `letter_id` is stable across retries: a receiver that saw it already
ignores it.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from schemas.models import RequestId

Text = Annotated[str, StringConstraints(min_length=1, max_length=200_000)]


class LetterBody(BaseModel):
    model_config = ConfigDict(frozen=True, strict=True, extra="forbid")

    lang: Literal["fr", "en"]
    subject: Annotated[str, StringConstraints(min_length=1, max_length=300)]
    text: Text
    html: Text


class ErasureLetter(BaseModel):
    model_config = ConfigDict(frozen=True, strict=True, extra="forbid")

    event_type: Literal["erasure.letter"] = "erasure.letter"
    letter_id: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    request_id: RequestId
    kind: Literal["completion", "extension", "refusal"]
    status: Annotated[str, StringConstraints(min_length=1, max_length=32)] = Field(
        description="The request's status when the letter was rendered")
    letters: list[LetterBody] = Field(min_length=1)
    occurred_at: AwareDatetime
