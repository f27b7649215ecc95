"""The aggregator: a batching sink from the outcomes topic into the ledger.

Contract (in the spirit of quix-streams' sink contract), for each batch the
agent takes off the outcomes topic (`Aggregator.take`):

1. Validate and verify. An event that is not a plan or an outcome is
   dead-lettered (its coordinates and the wrong fields' names, never values) and
   goes no further; so is one that is unsigned, mis-signed, or signed by a signer
   the register does not entitle to it (a plan: the router; an outcome of a
   system: that system's connector, or the desk), with the reason.
2. Dedupe against the working state, a table keyed by request id (faust Table in
   production, partitioned like the outcomes topic). A second plan of a request,
   or an outcome for a system already final, is dropped. The table only filters;
   the ledger decides: an outcome whose plan is not in this worker's table yet,
   a hold's release, and an outcome for a `failed` system (an officer may have
   reopened it) always go through. The batch's changes reach the table only
   after the ledger has them (step 3): faust sends each change to the table's
   changelog at once, and a worker killed between the two would otherwise leave
   the partition's next owner a table that drops, as duplicates, the very events
   the ledger never received.
3. Write. `Ledger.record` writes what is left in ONE transaction and returns the
   requests that became final. If the write FAILS it is retried in place, with
   backoff and without limit (`retrying.until_done`): the batch stays unacked, so
   its offsets are not committed past it, and the agent takes no further batch
   meanwhile. Letting the exception escape would lose the batch: faust restarts
   the agent without redelivering it and commits its offsets. If the worker is
   evicted from its group meanwhile (past the max poll interval), the partition's
   next owner re-reads it from the last committed offset, before this batch.
   `record` is idempotent (each event has a dedupe key in the ledger), so a batch
   written twice is recorded once: at-least-once delivery, once in the ledger.
   Not covered: a worker STOPPED while a write is failing. faust cancels the
   agent, and `take_events` acks the batch it yielded when its generator is
   finalised, so the batch's offsets may be committed unrecorded (not observed,
   read from faust's code). An outcome lost so is asked for again by the re-drive
   of silent systems; a lost plan is not.
4. Announce. Each completion is published on the completed topic, then marked
   published in the ledger. A crash between the two publishes it again on the
   next housekeeping pass (`Ledger.unpublished_completions`): consumers of the
   completed topic may see a completion twice, never zero times. A failing
   publish raises out of the agent; the completions are already in the ledger,
   unpublished, so housekeeping announces them.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping, Sequence
from typing import Any

from pydantic import ValidationError

from connectors.retry import RetryPolicy
from pipeline.codec import describe_invalid, encode, now_utc
from pipeline.ledger import Ledger
from pipeline.signing import Unverified, Verifier
from pipeline.streaming import topics
from pipeline.streaming.publishing import Message, Publisher, Received
from pipeline.streaming.retrying import LEDGER_RETRY, until_done
from schemas import (
    FINAL_SYSTEM_STATUSES,
    ErasureCompleted,
    ErasureOutcome,
    ErasurePlanned,
    outcomes_topic_adapter,
)

log = logging.getLogger(__name__)

CONSUMER = "aggregator"
# Final statuses after which an outcome is a duplicate; an officer's retry reopens a failed system.
DROPPED_AFTER = FINAL_SYSTEM_STATUSES - {"failed"}


class Aggregator:
    def __init__(self, ledger: Ledger, publisher: Publisher, progress: MutableMapping[str, Any],
                 verifier: Verifier, ledger_retry: RetryPolicy = LEDGER_RETRY) -> None:
        self.ledger = ledger
        self.publisher = publisher
        self.progress = progress  # request id -> {"systems": {system: status}}
        self.verifier = verifier
        self.ledger_retry = ledger_retry

    async def take(self, batch: Sequence[Received]) -> list[ErasureCompleted]:
        """Sink one batch (see the module's contract); return the completions it announced."""
        fresh: list[ErasurePlanned | ErasureOutcome] = []
        changes: dict[str, Any] = {}  # the working state's new values, kept until the ledger has them
        for record in batch:
            try:
                parsed = outcomes_topic_adapter.validate_json(record.value)
                self.verify(record, parsed)
            except ValidationError as exc:
                await self.publisher.dead_letter(record, describe_invalid(exc), CONSUMER)
                continue
            except Unverified as exc:
                await self.publisher.dead_letter(record, str(exc), CONSUMER)
                continue
            if self.remember(parsed, changes):
                fresh.append(parsed)
        if not fresh:
            return []
        completions = await until_done(self.ledger_retry, "aggregator: recording a batch in the ledger",
                                       self.ledger.record, fresh, now_utc())
        self.progress.update(changes)
        await announce(self.ledger, self.publisher, completions, self.ledger_retry)
        return completions

    def verify(self, record: Received, event: ErasurePlanned | ErasureOutcome) -> None:
        """Raise `Unverified` unless the record's signer may publish this plan or this system's outcome."""
        if isinstance(event, ErasurePlanned):
            self.verifier.check(record.topic, record.key, record.value, record.headers, "plan")
        else:
            self.verifier.check(record.topic, record.key, record.value, record.headers, "outcome",
                                event.system)

    def remember(self, event: ErasurePlanned | ErasureOutcome, changes: dict[str, Any] | None = None) -> bool:
        """Note the event's effect on the working state in `changes` (the table as this batch left it,
        applied by the caller once the ledger has the batch); False for what it shows to be a duplicate."""
        changes = {} if changes is None else changes
        rid = event.request_id
        state = changes[rid] if rid in changes else self.progress.get(rid)
        if isinstance(event, ErasurePlanned):
            if state is not None:
                return False
            changes[rid] = {"systems": {t.system: "planned" for t in event.targets}}
            return True
        if state is None or event.purpose == "release":
            return True  # plan not in this worker's table yet, or a hold's end: the ledger decides
        if state["systems"].get(event.system) in DROPPED_AFTER:
            return False
        systems = dict(state["systems"])
        systems[event.system] = event.status
        # A new value, not an in-place change: a faust table only records what is assigned.
        changes[rid] = {"systems": systems}
        return True


async def announce(ledger: Ledger, publisher: Publisher, completions: Sequence[ErasureCompleted],
                   ledger_retry: RetryPolicy = LEDGER_RETRY) -> None:
    """Publish completions on the completed topic, then mark them published in the ledger."""
    if not completions:
        return
    await publisher.send_all([Message(topics.COMPLETED, c.request_id.encode(), encode(c))
                              for c in completions])
    await until_done(ledger_retry, "marking completions published", ledger.mark_completion_published,
                     [c.request_id for c in completions])
    for completion in completions:
        log.info("aggregator: request %s %s (%s)", completion.request_id, completion.status,
                 "on time" if completion.on_time else "late")
