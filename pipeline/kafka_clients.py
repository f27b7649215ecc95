"""Kafka clients with the project's settings: the one place producers, consumers and admins are built.

Every producer is idempotent with `acks=all` (at-least-once without duplicates
from the producer's own retries); every consumer reads from `earliest` and
commits by hand after what it produced is acknowledged, with group timings short
enough for the embedded broker (a join completes after about half the session
timeout on Tansu) and a short fetch wait (Tansu holds a fetch for the whole wait
when it had nothing at request time). Each takes the TLS and SASL options of a
`KafkaSecurity` (`KafkaSecurity.from_settings`); plaintext when none is given.
"""

from __future__ import annotations

import contextlib
from typing import Any

from kafka import KafkaConsumer, KafkaProducer

from pipeline.kafka_security import PLAINTEXT, KafkaSecurity

# Under a burst a consumer may go seconds between polls; leaving the group then only
# adds a rebalance to the backlog.
MAX_POLL_INTERVAL_S = 300.0
FETCH_MAX_WAIT_MS = 100


def consumer_group_timing(session_timeout_s: float, heartbeat_s: float) -> dict[str, int]:
    return {
        "session_timeout_ms": int(session_timeout_s * 1000),
        "heartbeat_interval_ms": int(heartbeat_s * 1000),
        "max_poll_interval_ms": int(MAX_POLL_INTERVAL_S * 1000),
        "request_timeout_ms": max(15_000, int(session_timeout_s * 2500)),
    }


def producer(bootstrap: str, client_id: str, *, security: KafkaSecurity = PLAINTEXT,
             **options: Any) -> KafkaProducer:
    """An idempotent producer that waits for every in-sync replica."""
    settings: dict[str, Any] = {"acks": "all", "enable_idempotence": True, "client_id": client_id,
                                **security.kafka_python()}
    settings.update(options)
    return KafkaProducer(bootstrap_servers=bootstrap, **settings)


def group_consumer(bootstrap: str, group_id: str, client_id: str, session_timeout_s: float,
                   heartbeat_s: float, *, security: KafkaSecurity = PLAINTEXT,
                   **options: Any) -> KafkaConsumer:
    """A member of `group_id` that commits by hand and starts from the earliest record."""
    settings: dict[str, Any] = {
        "group_id": group_id, "client_id": client_id, "enable_auto_commit": False,
        "auto_offset_reset": "earliest", "fetch_max_wait_ms": FETCH_MAX_WAIT_MS,
        **consumer_group_timing(session_timeout_s, heartbeat_s), **security.kafka_python(),
    }
    settings.update(options)
    return KafkaConsumer(bootstrap_servers=bootstrap, **settings)


def reader(bootstrap: str, *, security: KafkaSecurity = PLAINTEXT, **options: Any) -> KafkaConsumer:
    """A consumer outside any group, for reading a topic from its beginning (assign + seek)."""
    settings: dict[str, Any] = {"enable_auto_commit": False, "auto_offset_reset": "earliest",
                                "fetch_max_wait_ms": FETCH_MAX_WAIT_MS, **security.kafka_python()}
    settings.update(options)
    return KafkaConsumer(bootstrap_servers=bootstrap, **settings)


def admin(bootstrap: str, *, security: KafkaSecurity = PLAINTEXT, **options: Any) -> Any:
    """An admin client (topics, group offsets)."""
    from kafka.admin import KafkaAdminClient

    settings: dict[str, Any] = {"client_id": "erasure-admin", **security.kafka_python()}
    settings.update(options)
    return KafkaAdminClient(bootstrap_servers=bootstrap, **settings)


def ensure_topics(bootstrap: str, topics: list[str], partitions: int, replication: int = 1,
                  configs: dict[str, dict[str, str]] | None = None, *,
                  security: KafkaSecurity = PLAINTEXT) -> None:
    """Create the topics that do not exist yet (idempotent)."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="erasure-admin",
                             **security.kafka_python())
    try:
        existing = set(admin.list_topics())
        wanted = [NewTopic(t, partitions, replication, topic_configs=(configs or {}).get(t, {}))
                  for t in topics if t not in existing]
        if wanted:
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(wanted)
    finally:
        admin.close()
