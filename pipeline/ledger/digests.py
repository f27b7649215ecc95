"""What the ledger keeps of an erased person so that a restored store can be erased again.

For each system with a `backup_retention`, and each identity of a request planned for it: a keyed
digest (HMAC-SHA256 under the subject_ref key, over the normalised identity: the construction of
`subject_ref`). It finds the person among the rows of a restored store without telling who they
were, and needs no data key, so it still works after crypto-shredding. Digests are forgotten once
the system's backups made before its erasure (or before the release of its last hold) have
expired; until the system's outcome is final, or while a hold is in force, they are kept.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from pipeline.crypto import normalise
from pipeline.ledger.chain import open_chain
from pipeline.ledger.tables import (
    UtcDateTime,
    chunks,
    holds_table,
    metadata,
    requests_table,
    systems_table,
)
from pipeline.sweep.rules import parse_period
from schemas import Identity, SubjectIdentities

# How often housekeeping looks for digests to forget: their periods are counted in days.
FORGET_CHECK_INTERVAL = timedelta(hours=1)
REFUSED = "refused"

identity_digests_table = sa.Table(
    "erasure_identity_digests", metadata,
    sa.Column("request_id", sa.String(36), primary_key=True),
    sa.Column("system", sa.String(64), primary_key=True),
    sa.Column("digest", sa.String(64), primary_key=True),
    sa.Column("backup_retention", sa.String(32), nullable=False),
    sa.Column("recorded_at", UtcDateTime, nullable=False),
    sa.Index("ix_erasure_identity_digests_system_digest", "system", "digest"),
)


def identity_digest(hmac_key: bytes, identity: Identity) -> str:
    """The keyed digest of one normalised identity (hex): subject_ref's construction, untruncated."""
    return hmac.new(hmac_key, normalise(identity).encode("utf-8"), hashlib.sha256).hexdigest()


def digest_rows(hmac_key: bytes, request_id: str, subject: SubjectIdentities,
                backup_retention: dict[str, str]) -> list[dict[str, str]]:
    """The rows to keep for one request: each identity, for each system whose backups are kept."""
    digests = sorted({identity_digest(hmac_key, i) for i in subject.identities})
    return [{"request_id": request_id, "system": system, "digest": digest, "backup_retention": period}
            for system, period in sorted(backup_retention.items()) for digest in digests]


@dataclass(frozen=True)
class ErasedPerson:
    """A request whose person a restored store may hold again."""

    request_id: str
    received_at: datetime | None
    status: str | None


@dataclass(frozen=True)
class ReplayRecord:
    """One person erased again: recorded in the hash chain of their request."""

    request_id: str
    system: str
    status: str
    payload: dict[str, Any]


class IdentityDigests:
    def __init__(self, engine: sa.Engine, writer: sa.Engine) -> None:
        self.engine, self.writer = engine, writer
        self._next_forget_check: datetime | None = None

    def record(self, rows: Sequence[dict[str, str]], now: datetime) -> int:
        """Keep these digests (those kept already are left as they are); how many were new."""
        if not rows:
            return 0
        t = identity_digests_table.c
        with self.writer.begin() as conn:
            existing = {(r.request_id, r.system, r.digest)
                        for chunk in chunks(sorted({r["request_id"] for r in rows}))
                        for r in conn.execute(sa.select(t.request_id, t.system, t.digest)
                                              .where(t.request_id.in_(chunk)))}
            fresh = [{**r, "recorded_at": now} for r in rows
                     if (r["request_id"], r["system"], r["digest"]) not in existing]
            if fresh:
                conn.execute(identity_digests_table.insert(), fresh)
        return len(fresh)

    def erased_since(self, system: str, since: datetime) -> dict[str, ErasedPerson]:
        """digest -> person, for the requests whose erasure in `system` ended at or after `since`,
        or has not ended: what a backup of `system` taken at `since` may still hold."""
        t, s, r = identity_digests_table.c, systems_table.c, requests_table.c
        query = (sa.select(t.digest, t.request_id, r.received_at, r.status)
                 .select_from(identity_digests_table
                              .outerjoin(requests_table, r.request_id == t.request_id)
                              .outerjoin(systems_table, sa.and_(s.request_id == t.request_id,
                                                                s.system == t.system)))
                 .where(t.system == system,
                        sa.or_(r.status.is_(None), r.status != REFUSED),
                        sa.or_(s.final.is_(None), s.final.is_(False), s.updated_at >= since)))
        with self.engine.connect() as conn:
            return {row.digest: ErasedPerson(row.request_id, row.received_at, row.status)
                    for row in conn.execute(query)}

    def count(self, request_id: str | None = None) -> int:
        query = sa.select(sa.func.count()).select_from(identity_digests_table)
        if request_id is not None:
            query = query.where(identity_digests_table.c.request_id == request_id)
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def forget_expired(self, now: datetime, force: bool = False) -> int:
        """Delete the digests whose system's backups no longer hold the person; how many.

        Checked at most every `FORGET_CHECK_INTERVAL` unless `force`."""
        if not force and self._next_forget_check is not None and now < self._next_forget_check:
            return 0
        self._next_forget_check = now + FORGET_CHECK_INTERVAL
        expired = [(row.request_id, row.system) for row in self._pairs() if _expired(row, now)]
        if not expired:
            return 0
        t = identity_digests_table.c
        with self.writer.begin() as conn:
            before = conn.execute(sa.select(sa.func.count()).select_from(identity_digests_table)).scalar_one()
            conn.execute(identity_digests_table.delete().where(
                t.request_id == sa.bindparam("rid"), t.system == sa.bindparam("sys")),
                [{"rid": rid, "sys": system} for rid, system in expired])
            after = conn.execute(sa.select(sa.func.count()).select_from(identity_digests_table)).scalar_one()
        return int(before - after)

    def _pairs(self) -> list[sa.Row[Any]]:
        """Each (request, system) with digests: its period, its outcome, its holds."""
        t, s, h = identity_digests_table.c, systems_table.c, holds_table.c
        same = sa.and_(h.request_id == t.request_id, h.system == t.system)
        unreleased = (sa.select(sa.func.count()).where(same, h.released_at.is_(None))
                      .scalar_subquery().label("unreleased"))
        last_release = sa.select(sa.func.max(h.released_at)).where(same).scalar_subquery().label(
            "last_release")
        query = (sa.select(t.request_id, t.system, t.backup_retention,
                           sa.func.max(t.recorded_at).label("recorded_at"), s.final, s.updated_at,
                           unreleased, last_release)
                 .select_from(identity_digests_table.outerjoin(
                     systems_table, sa.and_(s.request_id == t.request_id, s.system == t.system)))
                 .group_by(t.request_id, t.system, t.backup_retention, s.final, s.updated_at))
        with self.engine.connect() as conn:
            return list(conn.execute(query))

    def record_replays(self, records: Iterable[ReplayRecord], run_id: str, now: datetime) -> int:
        """One `replayed` event per person erased again, in the request's hash chain; how many new."""
        items = list(records)
        keys = [replayed_key(r.request_id, r.system, run_id) for r in items]
        with self.writer.begin() as conn:
            chain = open_chain(conn, keys)
            appended = sum(chain.append(r.request_id, r.system, "replayed", None, r.status,
                                        {**r.payload, "run": run_id}, now, key)
                           for r, key in zip(items, keys, strict=True))
            chain.write(conn)
        return appended


def replayed_key(request_id: str, system: str, run_id: str) -> str:
    """The dedupe key of a replay (a new spelling: it never collides with `dedupe`'s)."""
    return f"{request_id}:{system}:replayed:{run_id}"


def _expired(row: sa.Row[Any], now: datetime) -> bool:
    """A digest outlives every backup that may hold the person: taken before the erasure ended, or
    before the last hold was released. Without a system row (a plan never recorded), from when the
    digest was recorded."""
    if row.final is False or row.unreleased:
        return False
    ended = max(m for m in (row.updated_at, row.last_release, row.recorded_at) if m is not None)
    return bool(ended + parse_period(row.backup_retention) <= now)
