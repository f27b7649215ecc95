"""Signing keys for tests, in memory: the router, the desk, the intake, the sweeps and one connector
per named system."""

from __future__ import annotations

import base64

from nacl.signing import SigningKey
from pydantic import BaseModel

from pipeline.codec import encode
from pipeline.signing import (
    DESK,
    INTAKE,
    ROUTER,
    SWEEP,
    Headers,
    Signer,
    SignerEntry,
    SignerKey,
    SignersRegister,
    Verifier,
    connector_signer,
    default_entitlements,
)
from pipeline.streaming.publishing import Received
from schemas import ErasurePlanned, ErasureRequested
from schemas.models import RETENTION_CHANNEL


class TestSigners:
    """Every signer of a deployment over `systems`, with the register that lists them."""

    __test__ = False  # not a pytest test class

    def __init__(self, *systems: str) -> None:
        ids = [ROUTER, DESK, INTAKE, SWEEP, *(connector_signer(s) for s in systems)]
        self.signers = {i: Signer(i, SigningKey.generate()) for i in ids}
        self.register = SignersRegister(signers=[SignerEntry(
            id=i, may_sign=default_entitlements(i),
            keys=[SignerKey(public_key=base64.b64encode(bytes(s.key.verify_key)).decode())])
            for i, s in self.signers.items()])

    def signer(self, signer_id: str) -> Signer:
        return self.signers[signer_id]

    def verifier(self) -> Verifier:
        return Verifier(self.register)

    def headers(self, signer_id: str, topic: str, key: bytes | None, value: bytes) -> Headers:
        return self.signers[signer_id].headers(topic, key, value)

    def received(self, topic: str, offset: int, key: bytes, event: BaseModel | bytes) -> Received:
        """A consumed record as its rightful producer published it: a request by the intake (the
        sweeps' on the retention channel), a plan by the router, an event of a system by that
        system's connector; raw bytes unsigned."""
        if isinstance(event, bytes):
            return Received(topic, 0, offset, key, event)
        value = encode(event)
        if isinstance(event, ErasureRequested):
            signer_id = SWEEP if event.channel == RETENTION_CHANNEL else INTAKE
        elif isinstance(event, ErasurePlanned):
            signer_id = ROUTER
        else:
            signer_id = connector_signer(event.system)  # type: ignore[attr-defined]
        return Received(topic, 0, offset, key, value, self.headers(signer_id, topic, key, value))

    def signed(self, record: Received, signer_id: str = INTAKE) -> Received:
        """`record` with the signature headers `signer_id` would give it."""
        return record._replace(headers=self.headers(signer_id, record.topic, record.key, record.value))
