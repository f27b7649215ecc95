"""From the rows a rule covers to the people to erase, each with a request id of its own.

A person is who the router would call one: rows sharing a `subject_ref` (the keyed pseudonym of
their primary identity) are one person. Their request id is derived, keyed, from the system, the
rule, that pseudonym and the row's clock, so running a sweep again finds the same ids (and submits
none of them twice), while a person who comes back later and lapses again gets a new one.

The rows are read a chunk at a time (`SweepFinder.chunks`) and never all held: see `CoveredPeople`.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Callable, Iterable, Iterator, Sized
from dataclasses import dataclass, field
from typing import Protocol

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


class People(Protocol):
    """The people a rule covers: how many, and each of them in turn (a list, or read as it goes)."""

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[SweptPerson]: ...


@dataclass(frozen=True)
class Count:
    """A number where a collection's size is asked for: the people counted, never held."""

    n: int

    def __len__(self) -> int:
        return self.n


@dataclass(frozen=True)
class ToSubmit:
    """The people still to submit: their number, and the people to go through for them (the
    submitter asks the ledger, batch by batch, which were submitted already)."""

    people: Iterable[SweptPerson]
    n: int

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[SweptPerson]:
        return iter(self.people)


@dataclass
class RulePlan:
    """What one rule covers now: its people, and the rows it had to leave (no usable identity)."""

    system: str
    rule: RetentionSweep
    people: People = field(default_factory=list)
    unusable_rows: int = 0
    already_submitted: Sized = field(default_factory=set)

    @property
    def to_submit(self) -> ToSubmit:
        return ToSubmit(self.people, len(self.people) - len(self.already_submitted))

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


RowChunks = Callable[[], Iterator[list[SweptRow]]]


class CoveredPeople:
    """The people of a rule's rows, read from the store a chunk at a time, never all held.

    Counting (on creation) reads every row once and keeps, per person, only their pseudonym, their
    latest clock and how many rows they have: enough for their request id and for exact counts.
    Going through them reads the rows again, chunk by chunk: a person is given out at their last
    row, with the identities of all their rows (only people whose rows are not all read yet are
    held). A person whose rows were all deleted or changed meanwhile is no longer covered and is
    left out; one seen only now (a row added since the count) waits for the next sweep; the
    request id stays the counted one, so nobody is submitted twice either way.
    """

    def __init__(self, hmac_key: bytes, system: str, rule: RetentionSweep, read: RowChunks) -> None:
        self._key, self.system, self.rule, self._read = hmac_key, system, rule, read
        self.unusable_rows = 0
        self._tally: dict[str, tuple[str, int]] = {}  # subject_ref -> (latest clock, rows)
        for rows in read():
            for row in rows:
                identities = _identities(row)
                if not identities:
                    self.unusable_rows += 1
                    continue
                ref = subject_ref(hmac_key, SubjectIdentities(identities=identities))
                anchor, count = self._tally.get(ref, (row.anchor, 0))
                self._tally[ref] = (max(anchor, row.anchor), count + 1)

    def __len__(self) -> int:
        return len(self._tally)

    def request_ids(self) -> Iterator[str]:
        for ref, (anchor, _) in self._tally.items():
            yield sweep_request_id(self._key, self.system, self.rule.name, ref, anchor)

    def __iter__(self) -> Iterator[SweptPerson]:
        unfinished: dict[str, tuple[dict[tuple[str, str], Identity], int]] = {}
        for rows in self._read():
            for row in rows:
                identities = _identities(row)
                if not identities:
                    continue
                ref = subject_ref(self._key, SubjectIdentities(identities=identities))
                counted = self._tally.get(ref)
                if counted is None:
                    continue
                known, seen = unfinished.pop(ref, ({}, 0))
                known.update({(i.identity_type, i.identity_value): i for i in identities})
                if seen + 1 < counted[1]:
                    unfinished[ref] = (known, seen + 1)
                    continue
                yield self._person(ref, counted[0], known)
        for ref, (known, _) in unfinished.items():  # some of their rows went meanwhile
            yield self._person(ref, self._tally[ref][0], known)

    def _person(self, ref: str, anchor: str, known: dict[tuple[str, str], Identity]) -> SweptPerson:
        subject = SubjectIdentities(identities=list(known.values())[:MAX_IDENTITIES])
        return SweptPerson(sweep_request_id(self._key, self.system, self.rule.name, ref, anchor), subject)
