"""The outbox relay: publishes the HTTP intake's acknowledged requests until the router has planned them.

The desk publishes each request it accepts at once; this is for the others: the desk could not
reach the broker, or the broker acknowledged and then lost the request (the embedded broker
restarted on memory storage), or lost its plan before the aggregator recorded it. It runs in the
stream worker, on a leader-only timer like housekeeping (one relay however many workers run),
and reads its work from the ledger (`pipeline.ledger.outbox`), so a missed tick is caught up by
the next. Publishing a request twice is harmless: the router plans a request once.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from pipeline.codec import now_utc
from pipeline.ledger.outbox import Outbox
from pipeline.streaming import topics
from pipeline.streaming.publishing import Message, Publisher

log = logging.getLogger(__name__)


class OutboxRelay:
    def __init__(self, outbox: Outbox, publisher: Publisher, batch_max: int = 500) -> None:
        self.outbox = outbox
        self.publisher = publisher
        self.batch_max = batch_max

    async def run(self, now: datetime | None = None) -> int:
        """Publish the rows due and not planned; how many went out."""
        now = now or now_utc()
        due = await asyncio.to_thread(self.outbox.due, now, self.batch_max)
        if not due:
            return 0
        ids = [row.request_id for row in due]
        try:
            await self.publisher.send_all([Message(topics.REQUESTS, row.request_id.encode(), row.body)
                                           for row in due])
        except Exception as exc:  # the broker is away: the rows wait for a later tick
            log.warning("outbox: %d request(s) not published (%s); trying again later", len(ids),
                        type(exc).__name__)
            await asyncio.to_thread(self.outbox.postpone, ids, now)
            return 0
        await asyncio.to_thread(self.outbox.published, ids, now)
        again = sum(1 for row in due if row.attempts > 0)
        if again:
            log.warning("outbox: published %d request(s) again that the router had not planned "
                        "(the broker lost them?)", again)
        else:
            log.info("outbox: published %d request(s) the desk had not", len(ids))
        return len(ids)
