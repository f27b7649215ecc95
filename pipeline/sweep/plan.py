"""From the rows a rule covers to the people to erase, each with a request id of its own.

A person is who the router would call one: rows sharing a `subject_ref` (the keyed pseudonym of
their primary identity) are one person. Their request id is derived, keyed, from the system, the
rule, that pseudonym and the row's clock, so running a sweep again finds the same ids (and submits
none of them twice), while a person who comes back later and lapses again gets a new one.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from dataclasses import dataclass, field

from pipeline.crypto import subject_ref
from pipeline.sweep.finder import SweptRow
from pipeline.sweep.rules import RetentionSweep
from schemas import Identity, Scope, SubjectIdentities
from schemas.identity import InvalidIdentityError, check_identity

MAX_IDENTITIES = 20  # what one request carries (SubjectIdentities)


def sweep_request_id(hmac_key: bytes, system: str, rule: str, person_ref: str, anchor: str) -> str:
    """A UUID in version 4 form (what the contract asks of request ids), derived under the key."""
    message = "\x1f".join(("erasure-sweep", system, rule, person_ref, anchor)).encode("utf-8")
    raw = bytearray(hmac.new(hmac_key, message, hashlib.sha256).digest()[:16])
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    return str(uuid.UUID(bytes=bytes(raw)))


@dataclass(frozen=True)
class SweptPerson:
    request_id: str
    subject: SubjectIdentities


@dataclass
class RulePlan:
    """What one rule covers now: its people, and the rows it had to leave (no usable identity)."""

    system: str
    rule: RetentionSweep
    people: list[SweptPerson] = field(default_factory=list)
    unusable_rows: int = 0
    already_submitted: set[str] = field(default_factory=set)

    @property
    def to_submit(self) -> list[SweptPerson]:
        return [p for p in self.people if p.request_id not in self.already_submitted]

    @property
    def scope(self) -> Scope | None:
        return Scope(systems=list(self.rule.systems)) if self.rule.systems else None


def _identities(row: SweptRow) -> list[Identity]:
    """The row's identities that meet their type's rule; a malformed one is left out, never guessed."""
    valid = []
    for kind, value in row.identities.items():
        try:
            valid.append(Identity(identity_type=kind, identity_value=check_identity(kind, value)))
        except InvalidIdentityError:
            continue
    return valid


def plan_rule(hmac_key: bytes, system: str, rule: RetentionSweep, rows: list[SweptRow]) -> RulePlan:
    plan = RulePlan(system, rule)
    people: dict[str, tuple[dict[tuple[str, str], Identity], str]] = {}
    for row in rows:
        identities = _identities(row)
        if not identities:
            plan.unusable_rows += 1
            continue
        ref = subject_ref(hmac_key, SubjectIdentities(identities=identities))
        known, anchor = people.get(ref, ({}, row.anchor))
        known.update({(i.identity_type, i.identity_value): i for i in identities})
        people[ref] = (known, max(anchor, row.anchor))
    for ref, (known, anchor) in people.items():
        subject = SubjectIdentities(identities=list(known.values())[:MAX_IDENTITIES])
        plan.people.append(SweptPerson(sweep_request_id(hmac_key, system, rule.name, ref, anchor), subject))
    return plan
