"""The faust application: wiring only.

Two agents take events in batches (`batching.take_batches`: no wake-ups while idle, and a
fetch wait of two seconds rather than 100 ms once idle, `idle_fetch`) and hand them to the
classes that do the work:
the router (`router.Router`, requests in, plan and tasks out) and the aggregator
(`aggregator.Aggregator`, plans and outcomes into the ledger, completions out).
One timer runs the periodic jobs (`housekeeping.Housekeeping`) on the group's
leader only (`on_leader=True`): faust elects as leader the worker that is
assigned the single partition of its `<app id>-__assignor-__leader` topic, so
with several workers exactly one runs them, and a lone worker (the embedded
Tansu broker included) is always the leader. The HTTP intake's outbox relay
(`pipeline.outbox`) runs on the leader too.

Everything the app publishes is sent again until the broker acknowledges it
(`resending.ResendingPublisher`). Every worker checks on a timer that the broker
still has the pipeline's topics (`topics.TopicKeeper`); a broker that lost them
(restarted without its storage) gets them back, and the worker leaves for its
supervisor to start it afresh (`broker_loss`): faust's offsets refer to logs
that no longer exist. The app has no faust table: the ledger is its only state
(see the aggregator's contract), so a worker has nothing to restore when it starts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import faust

from pipeline import liveness
from pipeline.crypto import PipelineKeys
from pipeline.kafka_clients import MAX_POLL_INTERVAL_S
from pipeline.kafka_security import KafkaSecurity
from pipeline.ledger import Ledger
from pipeline.ledger.outbox import Outbox
from pipeline.letters import LetterWriter
from pipeline.outbox import OutboxRelay
from pipeline.register import SystemsRegister
from pipeline.settings import Settings
from pipeline.signing import Signer, Verifier
from pipeline.streaming import topics
from pipeline.streaming.aggregator import Aggregator
from pipeline.streaming.batching import take_batches
from pipeline.streaming.broker_loss import leave_afresh
from pipeline.streaming.housekeeping import Housekeeping
from pipeline.streaming.idle_fetch import IdleFetchWait
from pipeline.streaming.publishing import Received, TopicPublisher
from pipeline.streaming.quiet_monitor import QuietMonitor
from pipeline.streaming.resending import ResendingPublisher
from pipeline.streaming.router import Router
from pipeline.streaming.transport import KeyHashPartitioner, broker_credentials, broker_url

APP_ID = "erasure-pipeline"
# The liveness beat (and the idle check of the fetch wait): the supervisor's stall threshold is a
# minute, so a beat every two seconds says as much as one a second, with half the wake-ups.
HEARTBEAT_INTERVAL_S = 2.0


def _faust_app(settings: Settings, bootstrap: str) -> faust.App:
    return faust.App(
        APP_ID,
        broker=broker_url(bootstrap),
        broker_credentials=broker_credentials(KafkaSecurity.from_settings(settings)),
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
        Monitor=QuietMonitor,  # faust's rates are read by its web views only: no sampler each second
        producer_acks=-1,
        producer_partitioner=KeyHashPartitioner(),  # the default partitions, each key hashed once
        topic_allow_declare=True,
    )


def _received(event: Any) -> Received:
    message = event.message
    headers = message.headers or ()
    pairs = list(headers.items() if isinstance(headers, Mapping) else headers)
    return Received(message.topic, message.partition, message.offset, message.key, event.value, pairs)


def build_app(settings: Settings, register: SystemsRegister, keys: PipelineKeys, ledger: Ledger,
              bootstrap: str, signer: Signer, verifier: Verifier,
              letters: LetterWriter | None = None) -> faust.App:
    """The app; `signer` signs all it publishes (the router's key), `verifier` checks requests, plans
    and outcomes."""
    app = _faust_app(settings, bootstrap)
    names = topics.all_topics([entry.id for entry in register.systems])
    faust_topics = {name: app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw",
                                    value_serializer="raw", partitions=settings.topic_partitions)
                    for name in names}
    publisher = ResendingPublisher(TopicPublisher(faust_topics, signer))  # never gives up: issue 11
    router = Router(register, keys, ledger, publisher, verifier)
    aggregator = Aggregator(ledger, publisher, verifier)
    housekeeping = Housekeeping(ledger, publisher, [entry.id for entry in register.systems],
                                settings.data_key_grace_s, settings.webhook_url, settings.webhook_secret,
                                letters)

    fetch_wait = IdleFetchWait(app)  # 100 ms while events come, 2 s once idle (idle_fetch.py)

    @app.agent(faust_topics[topics.REQUESTS], name="router")
    async def route(stream: Any) -> None:
        async for batch in take_batches(stream, settings.batch_max, settings.batch_within_s, fetch_wait.saw):
            await router.route([_received(event) for event in batch])

    @app.agent(faust_topics[topics.OUTCOMES], name="aggregator")
    async def aggregate(stream: Any) -> None:
        async for batch in take_batches(stream, settings.batch_max, settings.batch_within_s, fetch_wait.saw):
            await aggregator.take([_received(event) for event in batch])

    @app.timer(interval=settings.redrive_check_interval_s, on_leader=True,  # type: ignore[untyped-decorator]
               name="housekeeping")
    async def run_housekeeping() -> None:
        await housekeeping.run()

    beat = liveness.loop_beat(settings.heartbeat_file, "faust")

    # Turns while the event loop does: a worker whose loop is blocked stops beating (and is restarted).
    @app.timer(interval=HEARTBEAT_INTERVAL_S, name="heartbeat")  # type: ignore[untyped-decorator]
    async def heartbeat() -> None:
        beat.beat()
        fetch_wait.tick()

    # Broker loss (issue 11): the HTTP intake's outbox, and the topics a restarted broker lost.
    relay = OutboxRelay(Outbox(ledger.engine, ledger.writer, settings.outbox_recheck_after_s,
                               settings.outbox_recheck_cap_s), publisher)
    keeper = topics.TopicKeeper(bootstrap, names,
                                settings.topic_partitions, settings.topic_replication_factor,
                                topics.topic_configs(settings.requests_retention_s),
                                single_partition=(f"{APP_ID}-__assignor-__leader",),
                                security=KafkaSecurity.from_settings(settings))
    keeper.check()  # the topics before faust starts: what the timer's checks compare with

    @app.timer(interval=settings.redrive_check_interval_s, on_leader=True,  # type: ignore[untyped-decorator]
               name="outbox")
    async def relay_outbox() -> None:
        await relay.run()

    @app.timer(interval=settings.topic_check_interval_s, name="topics")  # type: ignore[untyped-decorator]
    async def keep_topics() -> None:
        if (await asyncio.to_thread(keeper.check)).lost:  # faust's offsets belong to the lost log
            leave_afresh("the broker lost the pipeline's topics")

    return app
