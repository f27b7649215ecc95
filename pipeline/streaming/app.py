"""The faust application: the router and the aggregator.

Router: validates each request, opens its sealed identities, stores a fresh data
key, re-seals the identities under it, plans from systems.yaml, publishes the
plan on the outcomes topic and then one task per system.

Aggregator: records plans and outcomes in the ledger in batches (one
transaction per batch), keeps working state in a faust table keyed by request
id, publishes `ErasureCompleted` once every planned system is final, and on a
timer re-drives systems that stayed silent past their expected turnaround.

Both agents take events in batches and write the ledger off the event loop.
Invalid events go to the dead-letter topic with their coordinates.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import faust
from pydantic import ValidationError

from pipeline import notifications
from pipeline.codec import dead_letter, describe_invalid, encode, now_utc
from pipeline.crypto import (
    PipelineKeys,
    SealError,
    new_data_key,
    open_intake,
    seal_with_data_key,
    subject_ref,
)
from pipeline.deadlines import due_at
from pipeline.kafka_clients import MAX_POLL_INTERVAL_S
from pipeline.ledger import Ledger
from pipeline.register import SystemEntry, SystemsRegister
from pipeline.settings import Settings
from pipeline.streaming import topics
from pipeline.streaming.transport import broker_url
from schemas import (
    FINAL_SYSTEM_STATUSES,
    ErasureOutcome,
    ErasurePlanned,
    ErasureRequested,
    ErasureTask,
    PlannedTarget,
    SubjectIdentities,
    outcomes_topic_adapter,
)

log = logging.getLogger(__name__)

APP_ID = "erasure-pipeline"


def targets_for(request: ErasureRequested, register: SystemsRegister) -> list[SystemEntry]:
    """Systems in scope: all, or those named, or those holding a named data category."""
    scope = request.scope
    chosen = []
    for entry in register.systems:
        if scope and scope.systems is not None and entry.id not in scope.systems:
            continue
        if scope and scope.data_categories is not None and not (
                set(entry.data_categories) & set(scope.data_categories)):
            continue
        chosen.append(entry)
    return chosen


def build_app(settings: Settings, register: SystemsRegister, keys: PipelineKeys, ledger: Ledger,
              bootstrap: str) -> faust.App:
    assert keys.intake_private is not None and keys.subject_ref_hmac is not None
    intake_private, hmac_key = keys.intake_private, keys.subject_ref_hmac
    app = faust.App(
        APP_ID,
        broker=broker_url(bootstrap),
        store="memory://",
        processing_guarantee="at_least_once",
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication_factor,
        broker_session_timeout=settings.group_session_timeout_s,
        broker_heartbeat_interval=settings.group_heartbeat_interval_s,
        broker_rebalance_timeout=max(10.0, settings.group_session_timeout_s * 2),
        # A full stream buffer stops faust polling; past this interval the worker would be
        # dropped from its group (seen under a 10,000-request burst with 10 s).
        broker_max_poll_interval=MAX_POLL_INTERVAL_S,
        broker_request_timeout=max(15.0, settings.group_session_timeout_s * 2.5),
        consumer_auto_offset_reset="earliest",
        table_standby_replicas=0,
        web_enabled=False,
        producer_acks=-1,
        topic_allow_declare=True,
    )

    def raw_topic(name: str) -> Any:
        return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw",
                         value_serializer="raw", partitions=settings.topic_partitions)

    requests_topic = raw_topic(topics.REQUESTS)
    outcomes_topic = raw_topic(topics.OUTCOMES)
    completed_topic = raw_topic(topics.COMPLETED)
    notifications_topic = raw_topic(topics.NOTIFICATIONS)
    deadletter_topic = raw_topic(topics.DEADLETTER)
    task_topics = {entry.id: raw_topic(topics.task_topic(entry.id)) for entry in register.systems}

    # Working state per request; the ledger is the record. Partitioned by key like the
    # outcomes topic (same key bytes, same partitioner), so each worker owns its requests' state.
    progress = app.Table("request-progress", key_type=str, use_partitioner=True,
                         partitions=settings.topic_partitions)

    async def send_all(messages: Sequence[tuple[Any, bytes, bytes]]) -> None:
        """Publish in order and wait until the broker has every one (at-least-once)."""
        pending = [await topic.send(key=key, value=value) for topic, key, value in messages]
        await asyncio.gather(*pending)

    async def send_dead_letter(event: Any, reason: str, consumer: str) -> None:
        message = event.message
        log.warning("%s: dead-lettering %s[%d]@%d: %s", consumer, message.topic, message.partition,
                    message.offset, reason)
        await send_all([(deadletter_topic, message.key or b"", dead_letter(
            message.topic, message.partition, message.offset, reason, consumer))])

    # -- router ---------------------------------------------------------------------
    @app.agent(requests_topic, name="router")
    async def route(stream: Any) -> None:
        async for batch in stream.take_events(settings.batch_max, within=settings.batch_within_s):
            accepted: dict[str, tuple[ErasureRequested, SubjectIdentities]] = {}
            for event in batch:
                try:
                    request = ErasureRequested.model_validate_json(event.value)
                    subject = open_intake(intake_private, request.identities)
                except ValidationError as exc:
                    await send_dead_letter(event, describe_invalid(exc), "router")
                    continue
                except SealError as exc:
                    await send_dead_letter(event, str(exc), "router")
                    continue
                accepted.setdefault(request.request_id, (request, subject))
            if not accepted:
                continue
            now = now_utc()
            proposals = {rid: new_data_key() for rid in accepted}
            grants = await asyncio.to_thread(ledger.grant_data_keys, proposals, now)
            messages: list[tuple[Any, bytes, bytes]] = []
            routed = []
            for rid, (request, subject) in accepted.items():
                grant = grants.get(rid)
                if grant is None or grant.tasks_published:
                    log.info("router: request %s already routed; duplicate ignored", rid)
                    continue
                messages.extend(plan_messages(request, subject, grant.data_key, now))
                routed.append(rid)
            await send_all(messages)
            await asyncio.to_thread(ledger.mark_tasks_published, routed, now)
            log.info("router: routed %d request(s)", len(routed))

    def plan_messages(request: ErasureRequested, subject: SubjectIdentities, data_key: bytes,
                      now: Any) -> list[tuple[Any, bytes, bytes]]:
        sealed = seal_with_data_key(data_key, request.request_id, subject)
        ref = subject_ref(hmac_key, subject)
        due = due_at(request.received_at)
        targets = targets_for(request, register)
        key = request.request_id.encode()
        plan = ErasurePlanned(
            request_id=request.request_id, received_at=request.received_at, due_at=due,
            subject_ref=ref, identities=sealed, scope=request.scope, planned_at=now,
            channel=request.channel, verification=request.verification,
            targets=[PlannedTarget(system=t.id, expected_turnaround_s=t.expected_turnaround_s)
                     for t in targets],
        )
        messages = [(outcomes_topic, key, encode(plan))]
        for target in targets:
            task = ErasureTask(request_id=request.request_id, system=target.id, attempt=1,
                               received_at=request.received_at, due_at=due, subject_ref=ref,
                               identities=sealed, scope=request.scope)
            messages.append((task_topics[target.id], key, encode(task)))
        return messages

    # -- aggregator -------------------------------------------------------------------
    @app.agent(outcomes_topic, name="aggregator")
    async def aggregate(stream: Any) -> None:
        async for batch in stream.take_events(settings.batch_max, within=settings.batch_within_s):
            fresh: list[ErasurePlanned | ErasureOutcome] = []
            for event in batch:
                try:
                    parsed = outcomes_topic_adapter.validate_json(event.value)
                except ValidationError as exc:
                    await send_dead_letter(event, describe_invalid(exc), "aggregator")
                    continue
                if remember(parsed):
                    fresh.append(parsed)
            if fresh:
                completions = await asyncio.to_thread(ledger.record, fresh, now_utc())
                await announce(completions)

    def remember(event: ErasurePlanned | ErasureOutcome) -> bool:
        """Update the working state; False for what it shows to be a duplicate."""
        state = progress.get(event.request_id)
        if isinstance(event, ErasurePlanned):
            if state is not None:
                return False
            progress[event.request_id] = {"systems": {t.system: "planned" for t in event.targets}}
            return True
        if state is None or event.purpose == "release":
            return True  # plan not in this worker's table yet, or a hold's end: the ledger decides
        if state["systems"].get(event.system) in FINAL_SYSTEM_STATUSES:
            return False
        systems = dict(state["systems"])
        systems[event.system] = event.status
        progress[event.request_id] = {"systems": systems}
        return True

    async def announce(completions: Sequence[Any]) -> None:
        if not completions:
            return
        await send_all([(completed_topic, c.request_id.encode(), encode(c)) for c in completions])
        await asyncio.to_thread(ledger.mark_completion_published, [c.request_id for c in completions])
        for completion in completions:
            log.info("aggregator: request %s %s (%s)", completion.request_id, completion.status,
                     "on time" if completion.on_time else "late")

    @app.timer(interval=settings.redrive_check_interval_s)  # type: ignore[untyped-decorator]
    async def redrive() -> None:
        now = now_utc()
        tasks = await asyncio.to_thread(ledger.redrive_silent, now)
        messages = [(task_topics[t.system], t.request_id.encode(), encode(t))
                    for t in tasks if t.system in task_topics]
        if messages:
            await send_all(messages)
            log.warning("aggregator: re-drove %d silent task(s)", len(messages))
        releases = await asyncio.to_thread(ledger.request_releases, now)
        if releases:
            await send_all([(task_topics[t.system], t.request_id.encode(), encode(t))
                            for t in releases if t.system in task_topics])
            log.info("aggregator: %d hold(s) ended; release tasks published", len(releases))
        await announce(await asyncio.to_thread(ledger.unpublished_completions))
        await notify(now)
        shredded = await asyncio.to_thread(ledger.destroy_data_keys, now, settings.data_key_grace_s)
        if shredded:
            log.info("aggregator: destroyed the data keys of %d finished request(s)", shredded)

    async def notify(now: Any) -> None:
        await asyncio.to_thread(notifications.flag_overdue, ledger, now)
        notices = await asyncio.to_thread(notifications.pending, ledger, now)
        if not notices:
            return
        await send_all([(notifications_topic, n.request_id.encode(), encode(n)) for n in notices])
        delivered = [n.notification_id for n in notices]
        if settings.webhook_url:
            delivered = []
            for notice in notices:
                try:
                    await asyncio.to_thread(notifications.post_webhook, settings.webhook_url,
                                            settings.webhook_secret or "", notice)
                    delivered.append(notice.notification_id)
                except Exception as exc:  # retried later, with backoff
                    error = f"{type(exc).__name__}: {str(exc)[:150]}"
                    log.warning("aggregator: webhook for %s failed (%s)", notice.notification_id, error)
                    await asyncio.to_thread(notifications.mark, ledger, notice.notification_id, now, error)
        await asyncio.to_thread(notifications.mark_delivered, ledger, delivered, now)

    return app
