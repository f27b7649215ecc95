"""A small desk for the hardening tests: a SQLite ledger with one in-progress request whose one
system awaits a manual confirmation, an officer, an intake client; no broker (sent messages kept)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from pipeline.deadlines import due_at
from pipeline.desk.app import DeskSecurity, Publisher, create_app
from pipeline.ledger import Ledger, open_ledger
from pipeline.ledger.accounts import Access
from schemas import ErasureOutcome, ErasurePlanned, PlannedTarget, SealedIdentities
from tests.desk_fixtures import OFFICER, PLAIN_HTTP
from tests.desk_server import serve
from tests.fakes.signers import TestSigners


@dataclass
class SmallDesk:
    url: str
    ledger: Ledger
    access: Access
    request_id: str
    tokens: dict[str, str]
    sent: list[tuple[str, bytes, bytes]] = field(default_factory=list)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, follow_redirects=False, timeout=30)


@contextmanager
def small_desk(root: Path, security: DeskSecurity = PLAIN_HTTP) -> Iterator[SmallDesk]:
    now = datetime.now(UTC)
    ledger = open_ledger(f"sqlite:///{root / 'ledger.db'}")
    access = Access(ledger)
    access.set_user(OFFICER[0], "officer", OFFICER[1], now)
    tokens = {name: access.add_client(name, now) for name in ("php-backend", "other-backend")}
    rid, received = str(uuid.uuid4()), now - timedelta(days=2)
    sealed = SealedIdentities(alg="secretbox-xsalsa20poly1305", key_id=rid, ciphertext="c2VjcmV0")
    ledger.record([
        ErasurePlanned(request_id=rid, received_at=received, due_at=due_at(received), subject_ref="sr_h",
                       identities=sealed, planned_at=received,
                       targets=[PlannedTarget(system="paper-vendor", expected_turnaround_s=60)]),
        ErasureOutcome(request_id=rid, system="paper-vendor", attempt=1, status="manual", occurred_at=now),
    ], now)
    sent: list[tuple[str, bytes, bytes]] = []
    publisher = Publisher(lambda *message: sent.append(message[:3]), TestSigners().signer("desk"))
    app = create_app(ledger, access, publisher, None, "secret",
                     lambda system: f"tasks.{system}", "requests", security=security)
    with serve(app) as url:
        yield SmallDesk(url, ledger, access, rid, tokens, sent)
    ledger.close()
