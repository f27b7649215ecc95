"""Erase again after a restore: find, among a restored store's rows, the people erased since the
backup was taken, and erase them again through the system's connector.

People are found by the keyed digests the ledger keeps of erased identities
(`pipeline.ledger.digests`), so the request's data key is not needed (it may be destroyed). Only
the identities the person gave in their request are used, as the restored rows spell them; the
connector erases as it did the first time (holds respected: what was held is held again, until the
same date). Each person erased again is recorded in their request's hash chain (`replayed`).
Finally, the store drops every held row whose retention has ended (released since the backup).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from connectors.base import ConnectorError, EraseResult, TaskContext
from connectors.retention import RetentionPolicy
from pipeline.ledger import Ledger
from pipeline.ledger.digests import ErasedPerson, ReplayRecord, identity_digest
from schemas import Identity, SubjectIdentities
from schemas.identity import IdentityType, InvalidIdentityError, check_identity

MAX_IDENTITIES = 20


class RestorableStore(Protocol):
    """A connector that can list its people's identity values (the SQL store)."""

    system: str

    def identity_values(self) -> Iterable[tuple[IdentityType, str]]: ...

    def erase(self, subject: SubjectIdentities, context: TaskContext) -> EraseResult: ...

    def purge_ended_holds(self) -> int: ...


@dataclass
class ReplayReport:
    erased_people: int  # people the ledger knows were erased since the backup (with digests)
    found: dict[str, SubjectIdentities] = field(default_factory=dict)  # request id -> as restored
    records: list[ReplayRecord] = field(default_factory=list)
    purged_ended_holds: int = 0

    @property
    def failed(self) -> list[ReplayRecord]:
        return [r for r in self.records if r.status == "failed"]


def find_restored(store: RestorableStore, erased: dict[str, ErasedPerson], hmac_key: bytes,
                  ) -> dict[str, SubjectIdentities]:
    """request id -> the identities of that request found among the store's rows (each spelling)."""
    found: dict[str, dict[tuple[str, str], Identity]] = {}
    for kind, value in store.identity_values():
        try:
            identity = Identity(identity_type=kind, identity_value=check_identity(kind, value))
        except InvalidIdentityError:
            continue  # not an identity anyone could have asked with
        person = erased.get(identity_digest(hmac_key, identity))
        if person is not None:
            found.setdefault(person.request_id, {})[(kind, identity.identity_value)] = identity
    return {rid: SubjectIdentities(identities=list(ids.values())[:MAX_IDENTITIES])
            for rid, ids in sorted(found.items())}


def _erase_again(store: RestorableStore, request_id: str, person: ErasedPerson, subject: SubjectIdentities,
                 policy: RetentionPolicy, since: datetime) -> ReplayRecord:
    payload: dict[str, object] = {"since": since.isoformat()}
    context = TaskContext(request_id=request_id, system=store.system, attempt=1,
                          received_at=person.received_at, retention=policy)
    try:
        result = store.erase(subject, context)
    except ConnectorError as exc:  # its message names the system, never the person
        return ReplayRecord(request_id, store.system, "failed",
                            {**payload, "error": {"kind": exc.kind, "message": exc.message[:500]}})
    if result.evidence is not None and result.evidence.records_affected is not None:
        payload["records_affected"] = result.evidence.records_affected
    payload["holds"] = [{"data_category": h.data_category, "retain_until": h.retain_until.isoformat()}
                        for h in result.holds]
    return ReplayRecord(request_id, store.system, result.status, payload)


def replay(store: RestorableStore, ledger: Ledger, hmac_key: bytes, policy: RetentionPolicy,
           since: datetime, now: datetime, run_id: str, dry_run: bool = False) -> ReplayReport:
    """Erase again everyone erased from `store` since `since` whom its rows hold again."""
    erased = ledger.digests.erased_since(store.system, since)
    people = {p.request_id: p for p in erased.values()}
    report = ReplayReport(erased_people=len(people), found=find_restored(store, erased, hmac_key))
    if dry_run:
        return report
    for request_id, subject in report.found.items():
        report.records.append(_erase_again(store, request_id, people[request_id], subject, policy, since))
    ledger.digests.record_replays(report.records, run_id, now)
    report.purged_ended_holds = store.purge_ended_holds()
    return report
