"""The periodic jobs, run in order on every tick of one timer on the group's leader.

Each job reads its work from the ledger, so any worker may run it and a missed
tick is caught up by the next; running them on the leader only keeps several
workers from re-driving the same silent system or posting the same webhook at
once. A job's exception propagates: the timer's task fails and faust crashes the
worker, as before this class existed; nothing is lost, the jobs start over from
the ledger when the worker is restarted. (Marking completions published is the
exception: it is retried in place, like every ledger write of the agents.)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from pipeline import notifications
from pipeline.codec import encode, now_utc
from pipeline.ledger import Ledger
from pipeline.letters import LetterWriter
from pipeline.streaming import topics
from pipeline.streaming.aggregator import announce
from pipeline.streaming.publishing import Message, Publisher
from schemas import ErasureTask

log = logging.getLogger(__name__)

ANNOUNCE_GRACE = timedelta(seconds=30)


class Housekeeping:
    def __init__(self, ledger: Ledger, publisher: Publisher, systems: Iterable[str], data_key_grace_s: float,
                 webhook_url: str | None = None, webhook_secret: str | None = None,
                 letters: LetterWriter | None = None) -> None:
        self.ledger = ledger
        self.publisher = publisher
        self.systems = frozenset(systems)  # a task for a system no longer registered has nowhere to go
        self.data_key_grace_s = data_key_grace_s
        self.webhook_url = webhook_url
        self.webhook_secret = webhook_secret or ""
        self.letters = letters

    async def run(self, now: datetime | None = None) -> None:
        """Every job once, in this order."""
        now = now or now_utc()
        await self.redrive_silent_systems(now)
        await self.release_ended_holds(now)
        await self.announce_unpublished_completions(now)
        await self.notify(now)
        await self.deliver_letters(now)
        await self.shred_data_keys(now)
        await asyncio.to_thread(self.ledger.forget_identity_digests, now)  # past every backup's life

    async def redrive_silent_systems(self, now: datetime) -> int:
        """The next attempt for each planned system silent past its expected turnaround."""
        sent = await self._publish_tasks(await asyncio.to_thread(self.ledger.redrive_silent, now))
        if sent:
            log.warning("aggregator: re-drove %d silent task(s)", sent)
        return sent

    async def release_ended_holds(self, now: datetime) -> int:
        """A release task for each hold whose retention period has ended."""
        releases = await asyncio.to_thread(self.ledger.request_releases, now)
        if releases:
            await self._publish_tasks(releases)
            log.info("aggregator: %d hold(s) ended; release tasks published", len(releases))
        return len(releases)

    async def announce_unpublished_completions(self, now: datetime) -> None:
        """Completions recorded but not announced (a crash between the two).

        Only those older than `ANNOUNCE_GRACE`: the aggregator announces a completion right after
        recording it, on the same event loop; without the grace this timer could announce it too.
        """
        completions = await asyncio.to_thread(self.ledger.unpublished_completions, now - ANNOUNCE_GRACE)
        await announce(self.ledger, self.publisher, completions)

    async def notify(self, now: datetime) -> None:
        """Flag overdue requests, publish pending notifications, deliver them to the webhook if one is set."""
        await asyncio.to_thread(notifications.flag_overdue, self.ledger, now)
        await asyncio.to_thread(notifications.queue_completion_letters, self.ledger, now)
        notices = await asyncio.to_thread(notifications.pending, self.ledger, now)
        if not notices:
            return
        await self.publisher.send_all([Message(topics.NOTIFICATIONS, n.request_id.encode(), encode(n))
                                       for n in notices])
        delivered = [n.notification_id for n in notices]
        if self.webhook_url:
            delivered = []
            for notice in notices:
                try:
                    await asyncio.to_thread(notifications.post_webhook, self.webhook_url, self.webhook_secret,
                                            notice)
                    delivered.append(notice.notification_id)
                except Exception as exc:  # retried later, with backoff
                    error = f"{type(exc).__name__}: {str(exc)[:150]}"
                    log.warning("aggregator: webhook for %s failed (%s)", notice.notification_id, error)
                    await asyncio.to_thread(notifications.mark, self.ledger, notice.notification_id, now,
                                            error)
        await asyncio.to_thread(notifications.mark_delivered, self.ledger, delivered, now)

    async def deliver_letters(self, now: datetime) -> int:
        """The letters owed to people, rendered now and POSTed to the webhook (only there)."""
        if not (self.webhook_url and self.letters):
            return 0
        return await asyncio.to_thread(notifications.deliver_letters, self.ledger, self.webhook_url,
                                       self.webhook_secret, self.letters, now)

    async def shred_data_keys(self, now: datetime) -> int:
        """Crypto-shredding: destroy the data keys of requests finished more than the grace period ago."""
        shredded = await asyncio.to_thread(self.ledger.destroy_data_keys, now, self.data_key_grace_s)
        if shredded:
            log.info("aggregator: destroyed the data keys of %d finished request(s)", shredded)
        return shredded

    async def _publish_tasks(self, tasks: Sequence[ErasureTask]) -> int:
        messages = [Message(topics.task_topic(t.system), t.request_id.encode(), encode(t))
                    for t in tasks if t.system in self.systems]
        if messages:
            await self.publisher.send_all(messages)
        return len(messages)
