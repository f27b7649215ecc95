"""The intake client for the contact-form backend (Python).

It seals the person's identities with the pipeline's intake public key and
publishes `ErasureRequested` with an idempotent, acks=all producer, each record
signed with the backend's own signing key (`Signer`, signer `intake`; `erasure
sweep` signs with `sweep`): the router plans only requests signed by a signer the
signers register entitles to `request`. The backend holds the public key and its
signing key, nothing else. The `request_id` is the idempotency key: resubmitting the
same one changes nothing downstream.

`submit` returns once the broker has acknowledged the request, sending again (on a
fresh producer when a broker that lost its state made the old one unusable) until
`timeout_s`. An acknowledgement is as durable as the broker: on the embedded broker
(memory storage) a request acknowledged just before the broker dies is gone with it.
A backend that cannot lose one keeps it in its own outbox and submits it again until
`erasure status` (or the HTTP intake's receipt) shows it planned; see the README's
"Broker loss".
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from pipeline import kafka_clients
from pipeline.codec import encode
from pipeline.crypto import seal_for_intake
from pipeline.kafka_security import PLAINTEXT, KafkaSecurity
from pipeline.renewing_producer import RenewingProducer
from pipeline.signing import Signer
from pipeline.streaming import topics
from schemas import ErasureRequested, Identity, Scope, SubjectIdentities
from schemas.identity import InvalidIdentityError, check_identity

IdentitiesInput = Mapping[str, str] | Sequence[Identity]


def subject_identities(identities: IdentitiesInput) -> SubjectIdentities:
    """The identities to seal, each checked against its type's rule.

    Raises `InvalidIdentityError` naming the identity type and the rule, never the value. An
    `Identity` handed in is checked again: one built with `model_construct` skipped validation.
    """
    pairs = list(identities.items()) if isinstance(identities, Mapping) else [
        (i.identity_type, i.identity_value) for i in identities]
    if not pairs:
        raise InvalidIdentityError("identities", "at least one identity")
    items = [Identity(identity_type=kind, identity_value=check_identity(kind, value))  # type: ignore[arg-type]
             for kind, value in pairs]
    return SubjectIdentities(identities=items)


class IntakeClient:
    def __init__(self, bootstrap_servers: str, intake_public_key: bytes, signer: Signer, *,
                 security: KafkaSecurity = PLAINTEXT, **producer_options: Any) -> None:
        self.public_key = intake_public_key
        self.signer = signer
        self.producer = RenewingProducer(lambda: kafka_clients.producer(
            bootstrap_servers, "erasure-intake", security=security, **producer_options), "intake")

    def build(self, identities: IdentitiesInput, received_at: datetime, request_id: str | None = None,
              **fields: Any) -> ErasureRequested:
        scope = fields.pop("scope", None)
        return ErasureRequested(
            request_id=request_id or str(uuid.uuid4()), received_at=received_at,
            identities=seal_for_intake(self.public_key, subject_identities(identities)),
            scope=Scope(**scope) if isinstance(scope, dict) else scope, **fields,
        )

    def submit(self, identities: IdentitiesInput, received_at: datetime, request_id: str | None = None,
               timeout_s: float = 30.0, **fields: Any) -> str:
        """Publish one deletion request and wait for the broker's acknowledgement (sending again
        until `timeout_s`; then the broker's last error is raised)."""
        event = self.build(identities, received_at, request_id, **fields)
        key, value = event.request_id.encode(), encode(event)
        self.producer.deliver([(topics.REQUESTS, key, value, self.headers(key, value))], timeout_s)
        return event.request_id

    def headers(self, key: bytes, value: bytes) -> list[tuple[str, bytes]]:
        """The signature headers of a request record (the router refuses one without them)."""
        return self.signer.headers(topics.REQUESTS, key, value)

    def send(self, event: ErasureRequested) -> Any:
        """Publish one built request, signed, without waiting; the producer's future."""
        key, value = event.request_id.encode(), encode(event)
        return self.producer.send(topics.REQUESTS, key=key, value=value, headers=self.headers(key, value))

    def close(self) -> None:
        self.producer.flush()
        self.producer.close()

    def __enter__(self) -> IntakeClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
