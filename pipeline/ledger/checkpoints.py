"""Incremental verification of the hash chain: checkpoints of what was last found intact.

A checkpoint records the position and hash of the last event a verification walked to. The next
verification checks the checkpoint, then that the event it names still has that hash and still
follows from its own content, and walks only the events after it. Checkpoints are chained (each
hash covers the previous checkpoint's) and, when the ledger's signing key is present, signed
(Ed25519): someone who can write to the database but does not hold the key cannot move a
checkpoint past an edited event. Without the key a checkpoint is only as strong as the chain
itself (an edit that recomputes every hash shows only to `--full` against an outside copy).
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey

from pipeline.crypto import write_secret
from pipeline.ledger.chain import GENESIS_HASH, canonical_json, event_at, event_intact, stream_events, walk
from pipeline.ledger.tables import chain_head_table, checkpoints_table, utc

Mode = Literal["full", "incremental"]
LEDGER_KEY_FILE = "ledger.key"  # in the signing keys directory, beside the components' keys
_SIGNED_DOMAIN = b"erasure-ledger-checkpoint/v1\n"


def checkpoint_hash(prev_hash: str, position: int, event_hash: str, mode: str, verified_at: datetime) -> str:
    fields = {"position": position, "event_hash": event_hash, "mode": mode,
              "verified_at": utc(verified_at).isoformat()}  # type: ignore[union-attr]
    return hashlib.sha256((prev_hash + canonical_json(fields)).encode("utf-8")).hexdigest()


class LedgerKey:
    """The ledger's signing key (`<signing keys dir>/ledger.key`), for checkpoints."""

    def __init__(self, key: SigningKey) -> None:
        self.key = key

    @classmethod
    def load(cls, path: Path) -> LedgerKey | None:
        if not path.exists():
            return None
        try:
            return cls(SigningKey(base64.b64decode(path.read_text(encoding="ascii").strip(), validate=True)))
        except ValueError:
            raise ValueError(f"{path} is not a base64 Ed25519 signing key: restore it, or remove it "
                             "and run `erasure ledger key`") from None

    @classmethod
    def create(cls, path: Path) -> LedgerKey:
        """A new key written 0600 at `path` (which must not exist)."""
        if path.exists():
            raise FileExistsError(f"{path} exists already: the ledger's checkpoints are signed with it")
        key = SigningKey.generate()
        path.parent.mkdir(parents=True, exist_ok=True)
        write_secret(path, base64.b64encode(bytes(key)).decode("ascii"))
        return cls(key)

    def sign(self, digest: str) -> str:
        return base64.b64encode(self.key.sign(_SIGNED_DOMAIN + digest.encode("ascii")).signature).decode()

    def verifies(self, digest: str, signature: str) -> bool:
        try:
            self.key.verify_key.verify(_SIGNED_DOMAIN + digest.encode("ascii"),
                                       base64.b64decode(signature, validate=True))
        except (BadSignatureError, ValueError):
            return False
        return True


@dataclass(frozen=True)
class Verification:
    """What `erasure ledger verify` found: the events it walked (after `from_position`), the
    position of the first that does not follow (None: intact), or another problem in words."""

    mode: Mode
    from_position: int
    checked: int
    head_position: int
    elapsed_s: float
    broken_at: int | None = None
    problem: str | None = None
    note: str | None = None  # why an incremental run verified everything, or what it did not check
    warning: str | None = None  # a full run found the last checkpoint wrong (the events decide)
    checkpoint: int | None = None  # the position of the checkpoint written

    @property
    def intact(self) -> bool:
        return self.broken_at is None and self.problem is None

    @property
    def events_per_s(self) -> float:
        return self.checked / self.elapsed_s if self.elapsed_s > 0 else float("inf")


def _latest(conn: sa.Connection, before_id: int | None = None) -> Mapping[Any, Any] | None:
    query = sa.select(checkpoints_table).order_by(checkpoints_table.c.id.desc()).limit(1)
    if before_id is not None:
        query = query.where(checkpoints_table.c.id < before_id)
    row = conn.execute(query).first()
    return None if row is None else row._mapping


def checkpoint_problem(conn: sa.Connection, checkpoint: Mapping[Any, Any], key: LedgerKey | None,
                       head_position: int) -> tuple[str | None, int | None]:
    """What is wrong with the latest checkpoint, in words, and the event position concerned."""
    number, position = checkpoint["id"], int(checkpoint["position"])
    recomputed = checkpoint_hash(checkpoint["prev_hash"], position, checkpoint["event_hash"],
                                 checkpoint["mode"], checkpoint["verified_at"])
    if recomputed != checkpoint["hash"]:
        return f"verification checkpoint {number} was altered (its hash does not match its content)", None
    previous = _latest(conn, before_id=number)
    if checkpoint["prev_hash"] != (previous["hash"] if previous else GENESIS_HASH):
        return f"verification checkpoint {number} does not follow from the one before it", None
    signature = checkpoint["signature"]
    if key is not None and signature is not None and not key.verifies(checkpoint["hash"], signature):
        return (f"verification checkpoint {number} is not signed by this ledger's key "
                "(altered, or signed with another key)"), None
    if position > head_position:
        return (f"the event log ends at position {head_position}, before verification checkpoint "
                f"{number} at {position}: events were removed"), head_position + 1
    event = event_at(conn, position)
    if event is None or event["hash"] != checkpoint["event_hash"] or not event_intact(event):
        return (f"ledger event at chain position {position} is not the one verification checkpoint "
                f"{number} found intact: the event log was altered"), position
    return None, None


def _head(conn: sa.Connection) -> tuple[int, str]:
    row = conn.execute(sa.select(chain_head_table).where(chain_head_table.c.id == 1)).one()
    return int(row.last_position), str(row.last_hash)


def _start(conn: sa.Connection, full: bool, key: LedgerKey | None,
           head_position: int) -> tuple[int, str, str | None, tuple[str | None, int | None]]:
    """Where to start walking (position, hash), a note on what is (not) relied on, what is wrong."""
    checkpoint = _latest(conn)
    if checkpoint is None:
        return 0, GENESIS_HASH, None, (None, None)  # the first run: "from the first" says it all
    problem = checkpoint_problem(conn, checkpoint, key, head_position)
    if full or problem[0] is not None:
        return 0, GENESIS_HASH, None, problem
    if key is not None and checkpoint["signature"] is None:
        return 0, GENESIS_HASH, "the last checkpoint is not signed: every event verified", problem
    note = ("the last checkpoint's signature was not checked (no ledger key here)"
            if key is None and checkpoint["signature"] is not None else None)
    return int(checkpoint["position"]), str(checkpoint["event_hash"]), note, problem


def verify_ledger(engine: sa.Engine, writer: sa.Engine, now: datetime, full: bool = False,
                  key: LedgerKey | None = None) -> Verification:
    """Verify the chain from the last checkpoint (or from the start: `full`, or no usable checkpoint)
    up to the chain head as it was when this began; record a checkpoint when all is intact.

    A wrong checkpoint fails an incremental run; a full run reports it as a warning and, the events
    being intact, records a new checkpoint after it."""
    mode: Mode = "full" if full else "incremental"
    started = time.perf_counter()
    with engine.connect() as conn:
        head_position, head_hash = _head(conn)
        start, start_hash, note, (problem, at) = _start(conn, full, key, head_position)
        if problem is not None and not full:
            return Verification(mode, start, 0, head_position, time.perf_counter() - started,
                                broken_at=at, problem=problem)
        result = walk(stream_events(conn, start, head_position), start, start_hash)
    elapsed = time.perf_counter() - started
    done = Verification("full" if start == 0 else mode, start, result.checked, head_position, elapsed,
                        broken_at=result.broken_at, note=note, warning=problem)
    if not done.intact:
        return done
    if (result.last_position, result.last_hash) != (head_position, head_hash):
        return replace(done, broken_at=result.last_position + 1,
                       problem=f"the chain head names position {head_position}, the event log ends "
                               f"at {result.last_position}: the event log or its head was altered")
    written = record_checkpoint(writer, head_position, head_hash, done.mode, now, key)
    return replace(done, checkpoint=head_position if written else None)


def record_checkpoint(writer: sa.Engine, position: int, event_hash: str, mode: Mode, now: datetime,
                      key: LedgerKey | None) -> bool:
    """Append a checkpoint after the latest one, unless that one is as far already."""
    if position == 0:
        return False
    verified_at = (utc(now) or now).replace(microsecond=0)  # MariaDB keeps whole seconds
    with writer.begin() as conn:
        lock = sa.select(chain_head_table.c.id).where(chain_head_table.c.id == 1)
        conn.execute(lock if conn.dialect.name == "sqlite" else lock.with_for_update())  # one writer
        latest = _latest(conn)
        if latest is not None and int(latest["position"]) >= position:
            return False
        prev_hash = str(latest["hash"]) if latest is not None else GENESIS_HASH
        digest = checkpoint_hash(prev_hash, position, event_hash, mode, verified_at)
        conn.execute(checkpoints_table.insert().values(
            position=position, event_hash=event_hash, mode=mode, verified_at=verified_at,
            prev_hash=prev_hash, hash=digest, signature=key.sign(digest) if key else None))
    return True
