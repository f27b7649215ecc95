"""The aggregator: a batching sink from the outcomes topic into the ledger.

Contract (in the spirit of quix-streams' sink contract), for each batch the
agent takes off the outcomes topic (`Aggregator.take`):

1. Validate and verify. An event that is not a plan or an outcome is
   dead-lettered (its coordinates and the wrong fields' names, never values) and
   goes no further; so is one that is unsigned, mis-signed, or signed by a signer
   the register does not entitle to it (a plan: the router; an outcome of a
   system: that system's connector, or the desk), with the reason.
2. No working state of its own: the ledger dedupes. Every event has a dedupe
   key, and the request state machine ignores a second plan, an outcome for a
   system already final (an officer's retry reopens a failed one) and an interim
   report of a superseded attempt, in the same transaction that records the rest.
   A faust table used to filter duplicates before the ledger; it saved little
   (duplicates are rare: at-least-once redelivery), cost a changelog record per
   request and batch, grew by one entry per request forever, and had to be
   restored from its changelog before a worker could start (issue 12).
3. Write. `Ledger.record` writes the valid events in ONE transaction and returns the
   requests that became final. If the write FAILS it is retried in place, with
   backoff and without limit (`retrying.until_done`): the batch stays unacked, so
   its offsets are not committed past it, and the agent takes no further batch
   meanwhile. Letting the exception escape would lose the batch: faust restarts
   the agent without redelivering it and commits its offsets. If the worker is
   evicted from its group meanwhile (past the max poll interval), the partition's
   next owner re-reads it from the last committed offset, before this batch.
   `record` is idempotent (step 2), so a batch written twice is recorded once:
   at-least-once delivery, once in the ledger.
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
from collections import Counter
from collections.abc import Sequence

from pydantic import ValidationError

from connectors.retry import RetryPolicy
from pipeline.codec import describe_invalid, encode, now_utc
from pipeline.ledger import Ledger
from pipeline.signing import Unverified, Verifier
from pipeline.streaming import topics
from pipeline.streaming.publishing import Message, Publisher, Received
from pipeline.streaming.retrying import LEDGER_RETRY, until_done
from schemas import (
    ErasureCompleted,
    ErasureOutcome,
    ErasurePlanned,
    outcomes_topic_adapter,
)

log = logging.getLogger(__name__)

CONSUMER = "aggregator"


class Aggregator:
    def __init__(self, ledger: Ledger, publisher: Publisher, verifier: Verifier,
                 ledger_retry: RetryPolicy = LEDGER_RETRY) -> None:
        self.ledger = ledger
        self.publisher = publisher
        self.verifier = verifier
        self.ledger_retry = ledger_retry

    async def take(self, batch: Sequence[Received]) -> list[ErasureCompleted]:
        """Sink one batch (see the module's contract); return the completions it announced."""
        valid: list[ErasurePlanned | ErasureOutcome] = []
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
            valid.append(parsed)
        if not valid:
            return []
        completions = await until_done(self.ledger_retry, "aggregator: recording a batch in the ledger",
                                       self.ledger.record, valid, now_utc())
        await announce(self.ledger, self.publisher, completions, self.ledger_retry)
        return completions

    def verify(self, record: Received, event: ErasurePlanned | ErasureOutcome) -> None:
        """Raise `Unverified` unless the record's signer may publish this plan or this system's outcome."""
        if isinstance(event, ErasurePlanned):
            self.verifier.check(record.topic, record.key, record.value, record.headers, "plan")
        else:
            self.verifier.check(record.topic, record.key, record.value, record.headers, "outcome",
                                event.system)


async def announce(ledger: Ledger, publisher: Publisher, completions: Sequence[ErasureCompleted],
                   ledger_retry: RetryPolicy = LEDGER_RETRY) -> None:
    """Publish completions on the completed topic, then mark them published in the ledger."""
    if not completions:
        return
    await publisher.send_all([Message(topics.COMPLETED, c.request_id.encode(), encode(c))
                              for c in completions])
    await until_done(ledger_retry, "marking completions published", ledger.mark_completion_published,
                     [c.request_id for c in completions])
    # One line a batch (a line a request was a few per cent of the worker's CPU under a burst).
    by_status = Counter(c.status for c in completions)
    late = sum(1 for c in completions if not c.on_time)
    log.info("aggregator: %d request(s) final (%s; %d late): %s", len(completions),
             ", ".join(f"{status} {count}" for status, count in sorted(by_status.items())), late,
             " ".join(c.request_id for c in completions))
