"""Signed events: who published a request, a plan, a task or an outcome, and whether they may.

A topic is not a proof: anyone who can write to it could forge a completion. So
every producer signs each record it publishes (Ed25519) over `canonical`, the
topic, the record key and the value together: a signed task cannot be replayed
onto another system's topic or under another request. The signature travels in
two record headers, `erasure-signer` (the signer's id) and `erasure-signature`
(base64).

Consumers check each record against the signers register (`SignersRegister`,
`signers.json`): the signer must be listed, one of its keys still in force must
verify the signature, and the signer must be entitled to that kind of event for
that system (`may_sign`). `Verifier.check` raises `Unverified` with a reason that
names the signer and the system, never a value of the record.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Literal

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from pipeline.codec import now_utc
from schemas.models import SYSTEM_ID_PATTERN

SIGNER_HEADER = "erasure-signer"
SIGNATURE_HEADER = "erasure-signature"
CANONICAL_DOMAIN = b"erasure-event-signature/v1"

ROUTER = "router"
DESK = "desk"
INTAKE = "intake"  # the contact-form backend's Python client (`pipeline.intake.IntakeClient`)
SWEEP = "sweep"  # `erasure sweep`: the retention sweeps' requests
_NAME = SYSTEM_ID_PATTERN.strip("^$")
SIGNER_ID_PATTERN = rf"^{_NAME}(:{_NAME})?$"

EventKind = Literal["request", "plan", "task", "outcome"]
Headers = list[tuple[str, bytes]]
# What consumers hand over: kafka-python's list of pairs, or faust's dict.
ReceivedHeaders = Iterable[tuple[str, bytes]] | Mapping[str, bytes] | None


def connector_signer(system: str) -> str:
    """The signer id of the connector worker of `system`."""
    return f"connector:{system}"


def default_entitlements(signer_id: str) -> list[str]:
    """What `erasure keys init` lets each signer sign.

    A connector also signs the tasks of its own system: it re-queues them (retry later, poll a job).
    The desk publishes officers' retries (tasks), OpenDSR callbacks (outcomes) and the HTTP intake's
    requests; the router's key signs those requests too when the outbox relay, which runs in the
    stream worker, publishes them again (`pipeline.outbox`).
    """
    if signer_id == ROUTER:
        return ["request", "plan", "task:*"]
    if signer_id == DESK:
        return ["request", "task:*", "outcome:*"]
    if signer_id in (INTAKE, SWEEP):
        return ["request"]
    if signer_id.startswith("connector:"):
        system = signer_id.split(":", 1)[1]
        return [f"outcome:{system}", f"task:{system}"]
    raise ValueError(f"no default entitlements for signer {signer_id!r}: list its may_sign by hand")


class SignerKey(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    public_key: str = Field(description="base64 Ed25519 public key")
    not_after: AwareDatetime | None = Field(
        default=None, description="Signatures by this key are refused after this instant (rotation)")

    def in_force(self, now: datetime) -> bool:
        return self.not_after is None or now <= self.not_after

    def verify_key(self) -> VerifyKey:
        return VerifyKey(base64.b64decode(self.public_key, validate=True))


class SignerEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=SIGNER_ID_PATTERN)
    may_sign: list[str] = Field(
        description='"request", "plan", "task:<system>", "outcome:<system>"; "*" is any system')
    keys: list[SignerKey] = Field(min_length=1)

    def allows(self, kind: EventKind, system: str | None) -> bool:
        if kind in ("request", "plan"):  # not of one system
            return kind in self.may_sign
        return f"{kind}:{system}" in self.may_sign or f"{kind}:*" in self.may_sign


class SignersRegister(BaseModel):
    """`signers.json`: every signer's public keys and what it may sign."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    signers: list[SignerEntry] = Field(default_factory=list)

    def get(self, signer_id: str) -> SignerEntry | None:
        return next((s for s in self.signers if s.id == signer_id), None)


def canonical(topic: str, key: bytes | None, value: bytes) -> bytes:
    """The bytes a signature covers: each part length-prefixed, so no two records share them."""
    parts = (CANONICAL_DOMAIN, topic.encode("utf-8"), key or b"", value)
    return b"".join(len(part).to_bytes(8, "big") + part for part in parts)


class Signer:
    """Signs what one component publishes, with that component's private key."""

    def __init__(self, signer_id: str, key: SigningKey) -> None:
        self.id = signer_id
        self.key = key

    def headers(self, topic: str, key: bytes | None, value: bytes) -> Headers:
        signature = self.key.sign(canonical(topic, key, value)).signature
        return [(SIGNER_HEADER, self.id.encode("ascii")), (SIGNATURE_HEADER, base64.b64encode(signature))]


class Unverified(Exception):
    """A record that is not a signed event its signer may publish; the message is the reason."""


def header(headers: ReceivedHeaders, name: str) -> bytes | None:
    """The last value of header `name` (a producer may not add a second one to override the first)."""
    pairs = headers.items() if isinstance(headers, Mapping) else (headers or ())
    found = None
    for key, value in pairs:
        if key == name:
            found = value
    return found


def describe(kind: EventKind, system: str | None) -> str:
    if kind in ("request", "plan"):
        return f"a {kind}"
    return f"{'an' if kind == 'outcome' else 'a'} {kind} of {system!r}"


class Verifier:
    """Checks records against the register; `reload` gives a newer register after a rotation, or None."""

    def __init__(self, register: SignersRegister,
                 reload: Callable[[], SignersRegister | None] = lambda: None,
                 clock: Callable[[], datetime] = now_utc) -> None:
        self.register = register
        self.reload = reload
        self.clock = clock

    @property
    def register(self) -> SignersRegister:
        return self._register

    @register.setter
    def register(self, register: SignersRegister) -> None:
        # Indexed once per register, not per record: the entry by id, each key decoded once.
        self._register = register
        self._entries = {entry.id: entry for entry in reversed(register.signers)}  # the first of an id wins
        self._verify_keys = {key: _verify_key(key) for entry in register.signers for key in entry.keys}

    def check(self, topic: str, key: bytes | None, value: bytes, headers: ReceivedHeaders,
              kind: EventKind, system: str | None = None) -> str:
        """The id of the signer of this record; `Unverified` unless it may publish it."""
        try:
            return self._check(topic, key, value, headers, kind, system)
        except Unverified:
            newer = self.reload()  # a key rotated since the register was read
            if newer is None:
                raise
            self.register = newer
            return self._check(topic, key, value, headers, kind, system)

    def _check(self, topic: str, key: bytes | None, value: bytes, headers: ReceivedHeaders,
               kind: EventKind, system: str | None) -> str:
        raw_signer, raw_signature = header(headers, SIGNER_HEADER), header(headers, SIGNATURE_HEADER)
        if raw_signer is None or raw_signature is None:
            raise Unverified(f"unsigned: {describe(kind, system)} without the {SIGNER_HEADER} and "
                             f"{SIGNATURE_HEADER} headers")
        # The header's text is never echoed: a forger may put anything in it.
        entry = self._entries.get(raw_signer.decode("utf-8", errors="replace"))
        if entry is None:
            raise Unverified(f"{describe(kind, system)} signed by a signer that is not in the register")
        try:
            signature = base64.b64decode(raw_signature, validate=True)
        except (binascii.Error, ValueError):
            raise Unverified(f"{describe(kind, system)} with a malformed {SIGNATURE_HEADER} header") from None
        message, now = canonical(topic, key, value), self.clock()
        keys = (self._verify_keys[k] for k in entry.keys if k.in_force(now))
        if not any(_verifies(k, message, signature) for k in keys):
            raise Unverified(f"{describe(kind, system)} whose signature by {entry.id!r} does not verify with "
                             "a key in force (wrong or expired key, or the record was altered or moved)")
        if not entry.allows(kind, system):
            raise Unverified(f"{entry.id!r} may not sign {describe(kind, system)}")
        return entry.id


def _verify_key(key: SignerKey) -> VerifyKey | None:
    """The key's verifier; None for a public key that is not one (it verifies nothing)."""
    try:
        return key.verify_key()
    except (binascii.Error, ValueError, TypeError):
        return None


def _verifies(key: VerifyKey | None, message: bytes, signature: bytes) -> bool:
    if key is None:
        return False
    try:
        key.verify(message, signature)
    except (BadSignatureError, ValueError):
        return False
    return True
