"""Submit a sweep's requests at a controlled rate, through the same intake as everyone's.

Each request goes on the requests topic like a person's (identities sealed with the intake public
key, the record signed by the client's signer: `sweep` for `erasure sweep`, the one signer the
router takes a retention request from), with channel `retention` and verification
`not_applicable`; the router plans it, holds included. Requests go out in batches of about a
second's worth, the people read from the store as they go (never all held); a batch is recorded in
the ledger once the broker acknowledged all of it, so a crash re-sends at most one batch, which the
router recognises by its request ids.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from itertools import islice

from pipeline.codec import now_utc
from pipeline.intake import IntakeClient
from pipeline.ledger.sweeps import SweepLog
from pipeline.sweep.plan import RulePlan
from schemas.models import RETENTION_CHANNEL

SWEEP_VERIFICATION = "not_applicable"
MAX_BATCH = 100


class SweepSubmitter:
    def __init__(self, client: IntakeClient, sweeps: SweepLog, rate_per_s: float, ack_timeout_s: float = 30.0,
                 monotonic: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], datetime] = now_utc) -> None:
        if rate_per_s <= 0:
            raise ValueError("the rate must be positive")
        self.client, self.sweeps, self.rate_per_s = client, sweeps, rate_per_s
        self.ack_timeout_s = ack_timeout_s
        self.monotonic, self.sleep, self.clock = monotonic, sleep, clock

    def submit(self, plan: RulePlan, progress: Callable[[int], None] = lambda _: None) -> int:
        """Publish one request per person still to submit; how many were acknowledged.

        The people are gone through as the plan reads them (a chunk of the store at a time); each
        batch first asks the ledger which of its people were submitted already (by an earlier run,
        or earlier in this one), so nobody is submitted twice and nothing is held beyond a batch.
        """
        batch_size = max(1, min(MAX_BATCH, int(self.rate_per_s)))
        people = iter(plan.to_submit)
        started = self.monotonic()
        sent = 0
        while candidates := list(islice(people, batch_size)):
            unique = {p.request_id: p for p in candidates}
            known = self.sweeps.known(list(unique))
            batch = [p for rid, p in unique.items() if rid not in known]
            if not batch:
                continue
            wait_s = started + sent / self.rate_per_s - self.monotonic()
            if wait_s > 0:
                self.sleep(wait_s)
            received_at = self.clock()
            pending = []
            for person in batch:
                event = self.client.build(person.subject.identities, received_at, person.request_id,
                                          channel=RETENTION_CHANNEL, verification=SWEEP_VERIFICATION,
                                          scope=plan.scope)
                pending.append(self.client.send(event))
            for future in pending:
                future.get(self.ack_timeout_s)
            self.sweeps.record(plan.system, plan.rule.name, [p.request_id for p in batch], self.clock())
            sent += len(batch)
            progress(len(batch))
        return sent
