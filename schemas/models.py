"""Event contracts that cross process boundaries.

The JSON Schema files beside this module are generated from these models
(`erasure schemas export`) and a test keeps both in agreement, so a publisher
written in PHP or Node validates against exactly what the pipeline accepts.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    StringConstraints,
    TypeAdapter,
    ValidationInfo,
    field_validator,
)

from schemas.identity import ID_TYPES, MAX_CHARS, PATTERNS, IdentityType, check_identity

UUID4_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"
SYSTEM_ID_PATTERN = r"^[a-z][a-z0-9_-]{0,62}$"

RequestId = Annotated[str, StringConstraints(pattern=UUID4_PATTERN)]
SystemId = Annotated[str, StringConstraints(pattern=SYSTEM_ID_PATTERN)]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Base64Text = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9+/=_-]+$", min_length=4)]

SystemStatus = Literal["pending", "retrying", "manual", "erased", "not_found", "held", "failed"]
FINAL_SYSTEM_STATUSES: frozenset[str] = frozenset({"erased", "not_found", "held", "failed"})
RequestFinalStatus = Literal["completed", "completed_with_holds", "needs_attention"]
ErrorKind = Literal["retryable", "permanent", "auth"]


class Contract(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


def _per_type_rules() -> list[JsonValue]:
    """JSON Schema `if`/`then` per identity type: the value's pattern and length bound."""
    rules: list[JsonValue] = []
    for types in (("email",), ("phone",), ID_TYPES):
        kind = types[0]
        rules.append({
            "if": {"properties": {"identity_type": {"enum": list(types)}}, "required": ["identity_type"]},
            "then": {"properties": {"identity_value": {
                "pattern": PATTERNS[kind], "maxLength": MAX_CHARS[kind]}}},
        })
    return rules


class Identity(Contract):
    """One identity of the data subject. Only ever travels inside a sealed envelope.

    The value must match its type's rule (`schemas.identity`); surrounding spaces are stripped.
    """

    # The input is the person's identity: a printed error must not carry it.
    model_config = ConfigDict(json_schema_extra={"allOf": _per_type_rules()}, hide_input_in_errors=True)

    identity_type: IdentityType
    identity_value: Annotated[str, StringConstraints(min_length=1, max_length=max(MAX_CHARS.values()))]

    @field_validator("identity_value")
    @classmethod
    def _valid_for_its_type(cls, value: str, info: ValidationInfo) -> str:
        identity_type = info.data.get("identity_type")
        if identity_type is None:  # the type itself is invalid: that error is reported already
            return value
        return check_identity(identity_type, value)


class SubjectIdentities(Contract):
    """The clear-text payload of a sealed envelope."""

    model_config = ConfigDict(hide_input_in_errors=True)

    identities: Annotated[list[Identity], Field(min_length=1, max_length=20)]


class SealedIdentities(Contract):
    """Identities encrypted so that Kafka, logs and dead letters never hold them in clear.

    `sealedbox-x25519`: libsodium sealed box to the intake public key (from publishers).
    `secretbox-xsalsa20poly1305`: secret box under the request's data key (inside the pipeline).
    """

    alg: Literal["sealedbox-x25519", "secretbox-xsalsa20poly1305"]
    key_id: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    ciphertext: Base64Text


class Scope(Contract):
    """Optional restriction of a request to some systems or data categories."""

    systems: list[SystemId] | None = None
    data_categories: list[Annotated[str, StringConstraints(min_length=1, max_length=64)]] | None = None


# The channel of requests `erasure sweep` makes under the site's own retention rules: nobody asked.
RETENTION_CHANNEL: Final = "retention"


class ErasureRequested(Contract):
    """Published by the contact-form backend on `erasure.requests.v1`."""

    event_type: Literal["erasure.requested"] = "erasure.requested"
    request_id: RequestId = Field(description="UUID v4 chosen by the publisher; the idempotency key")
    received_at: AwareDatetime = Field(description="When the person asked: the legal clock starts")
    regulation: Literal["gdpr"] = "gdpr"
    channel: Literal["contact_form", "email", "http_api", "postal", "other", "retention"] = Field(
        default="contact_form",
        description="retention: submitted by `erasure sweep` under the site's own retention rule, "
        "not asked by the person")
    verification: Literal[
        "logged_in_session", "email_confirmation", "identity_document", "other", "none",
        "not_applicable",
    ] = Field(default="email_confirmation",
              description="not_applicable: nobody asked, so there is no identity to check (retention)")
    subject_ref: ShortText | None = Field(
        default=None,
        description="Publisher's own pseudonymous reference (never an identity); optional",
    )
    identities: SealedIdentities
    scope: Scope | None = None
    locale: Annotated[str, StringConstraints(pattern=r"^[a-z]{2}(-[A-Z]{2})?$")] | None = None


class PlannedTarget(Contract):
    system: SystemId
    expected_turnaround_s: Annotated[float, Field(gt=0)]


class ErasurePlanned(Contract):
    """The router's plan, published on `erasure.outcomes.v1` before any task."""

    event_type: Literal["erasure.planned"] = "erasure.planned"
    request_id: RequestId
    received_at: AwareDatetime
    due_at: AwareDatetime
    subject_ref: ShortText
    identities: SealedIdentities
    scope: Scope | None = None
    channel: ShortText | None = None
    verification: ShortText | None = None
    targets: list[PlannedTarget]
    planned_at: AwareDatetime


class ErasureTask(Contract):
    """One system's share of a request, on `erasure.tasks.<system>.v1`."""

    event_type: Literal["erasure.task"] = "erasure.task"
    request_id: RequestId
    system: SystemId
    attempt: Annotated[int, Field(ge=1)]
    not_before: AwareDatetime | None = None
    received_at: AwareDatetime
    due_at: AwareDatetime
    subject_ref: ShortText
    identities: SealedIdentities
    scope: Scope | None = None
    job_ref: ShortText | None = Field(
        default=None, description="Processor job to poll, for asynchronous erasures"
    )
    purpose: Literal["erase", "release"] = Field(
        default="erase", description="release: a hold has ended, erase the data it kept"
    )
    release_categories: list[ShortText] | None = Field(
        default=None, description="With purpose release: the data categories whose hold ended"
    )


class Hold(Contract):
    """Data kept under a legal obligation, one entry per data category."""

    data_category: ShortText
    legal_basis: ShortText
    citation: ShortText
    retain_until: AwareDatetime


class ResidualData(Contract):
    """Data the processor keeps after the erasure call, named so nobody reads a plain `erased`."""

    what: ShortText
    until: AwareDatetime | None = Field(
        default=None, description="When the processor removes it; None: the processor states no end"
    )


class Evidence(Contract):
    reference: ShortText | None = None
    http_status: Annotated[int, Field(ge=100, le=599)] | None = None
    records_affected: Annotated[int, Field(ge=0)] | None = None
    assurance: Literal["confirmed", "accepted"] | None = Field(
        default=None,
        description="confirmed: the processor's answer or a lookup shows the data gone; "
        "accepted: the processor committed to erase later",
    )
    completes_by: AwareDatetime | None = Field(
        default=None, description="With accepted: the processor's own commitment date"
    )
    residual: list[ResidualData] = Field(default_factory=list)


class OutcomeError(Contract):
    kind: ErrorKind
    message: Annotated[str, StringConstraints(min_length=1, max_length=500)]
    retry_after_s: Annotated[float, Field(ge=0)] | None = None


class ErasureOutcome(Contract):
    """What one system did for one attempt, on `erasure.outcomes.v1`."""

    event_type: Literal["erasure.outcome"] = "erasure.outcome"
    request_id: RequestId
    system: SystemId
    attempt: Annotated[int, Field(ge=1)]
    status: SystemStatus
    purpose: Literal["erase", "release"] = "erase"
    holds: list[Hold] = Field(default_factory=list)
    evidence: Evidence | None = None
    error: OutcomeError | None = None
    next_attempt_at: AwareDatetime | None = None
    occurred_at: AwareDatetime


class SystemSummary(Contract):
    system: SystemId
    status: SystemStatus
    attempt: Annotated[int, Field(ge=1)]


class ErasureCompleted(Contract):
    """Published once on `erasure.completed.v1` when every planned system is final."""

    event_type: Literal["erasure.completed"] = "erasure.completed"
    request_id: RequestId
    status: RequestFinalStatus
    systems: list[SystemSummary]
    received_at: AwareDatetime
    due_at: AwareDatetime
    completed_at: AwareDatetime
    on_time: bool


class ErasureNotification(Contract):
    """For the contact-form backend, so it can tell the person: on `erasure.notifications.v1`
    and, when configured, a signed webhook. Carries no personal data."""

    event_type: Literal["erasure.notification"] = "erasure.notification"
    notification_id: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    request_id: RequestId
    kind: Literal["completed", "overdue"]
    status: ShortText
    due_at: AwareDatetime
    occurred_at: AwareDatetime


class DeadLetter(Contract):
    """An event that could not be parsed or validated: where it was, why, never its content."""

    event_type: Literal["erasure.deadletter"] = "erasure.deadletter"
    source_topic: ShortText
    partition: Annotated[int, Field(ge=0)]
    offset: Annotated[int, Field(ge=0)]
    reason: Annotated[str, StringConstraints(min_length=1, max_length=1000)]
    consumer: ShortText
    dead_lettered_at: AwareDatetime


OutcomesTopicEvent = Annotated[ErasurePlanned | ErasureOutcome, Field(discriminator="event_type")]
outcomes_topic_adapter: TypeAdapter[ErasurePlanned | ErasureOutcome] = TypeAdapter(
    OutcomesTopicEvent
)

CONTRACTS: dict[str, type[Contract]] = {
    "ErasureRequested": ErasureRequested,
    "ErasurePlanned": ErasurePlanned,
    "ErasureTask": ErasureTask,
    "ErasureOutcome": ErasureOutcome,
    "ErasureCompleted": ErasureCompleted,
    "ErasureNotification": ErasureNotification,
    "DeadLetter": DeadLetter,
    "SubjectIdentities": SubjectIdentities,
}
