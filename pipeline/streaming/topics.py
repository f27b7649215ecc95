"""Topic names: one place, versioned in the name; and the `TopicKeeper`, which creates them again
when the broker lost them."""

from __future__ import annotations

import logging
import threading
from typing import Any

from pipeline.kafka_security import PLAINTEXT, KafkaSecurity

log = logging.getLogger(__name__)

REQUESTS = "erasure.requests.v1"
OUTCOMES = "erasure.outcomes.v1"
COMPLETED = "erasure.completed.v1"
DEADLETTER = "erasure.deadletter.v1"
NOTIFICATIONS = "erasure.notifications.v1"
# How long a topic check may wait on the broker: it runs on a timer, the next one tries again.
CHECK_TIMEOUT_MS = 5000


def task_topic(system: str) -> str:
    return f"erasure.tasks.{system}.v1"


def all_topics(systems: list[str]) -> list[str]:
    return [REQUESTS, OUTCOMES, COMPLETED, DEADLETTER, NOTIFICATIONS,
            *(task_topic(s) for s in systems)]


def topic_configs(requests_retention_s: float) -> dict[str, dict[str, str]]:
    """The requests topic holds sealed boxes under the intake key: keep it short."""
    return {REQUESTS: {"retention.ms": str(int(requests_retention_s * 1000))}}


class TopicKeeper:
    """Creates the topics it keeps that the broker does not have (again, after a broker lost its state).

    A broker that restarts without its storage (the embedded Tansu on memory storage) comes back with
    no topic. Tansu then creates a topic on its first produce or subscription, with its default
    partition count and none of our configs; `check()` on a short timer puts ours back first, with
    `partitions` (and `single_partition` topics with one, such as faust's leader topic). One admin
    client is kept open between checks and replaced after an error. Thread-safe.
    """

    def __init__(self, bootstrap: str, topics: list[str], partitions: int, replication: int = 1,
                 configs: dict[str, dict[str, str]] | None = None, *, single_partition: tuple[str, ...] = (),
                 security: KafkaSecurity = PLAINTEXT) -> None:
        self.bootstrap = bootstrap
        self.topics = [t for t in topics if t not in single_partition]
        self.single_partition = list(single_partition)
        self.partitions, self.replication = partitions, replication
        self.configs = configs or {}
        self.security = security
        self._client: Any = None
        self._lock = threading.Lock()
        self._checked = False  # topics missing at the first check are new, not lost

    def check(self) -> list[str]:
        """Create the missing topics; the names created (none when the broker did not answer)."""
        from kafka.errors import KafkaError

        from pipeline.kafka_clients import admin, ensure_topics

        with self._lock:
            try:
                if self._client is None:
                    self._client = admin(self.bootstrap, security=self.security,
                                         request_timeout_ms=CHECK_TIMEOUT_MS)
                created = ensure_topics(self.bootstrap, self.topics, self.partitions, self.replication,
                                        self.configs, client=self._client)
                if self.single_partition:
                    created += ensure_topics(self.bootstrap, self.single_partition, 1, self.replication,
                                             client=self._client)
            except (KafkaError, OSError) as exc:
                log.warning("topics: the broker did not answer the topic check (%s); trying again later",
                            type(exc).__name__)
                self.close()
                return []
        if created and self._checked:
            log.warning("topics: %d topic(s) missing on the broker (restarted without its storage?), "
                        "created again: %s", len(created), ", ".join(sorted(created)))
        elif created:
            log.info("topics: created %s", ", ".join(sorted(created)))
        self._checked = True
        return created

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception as exc:  # a client already broken: nothing more to release
                log.debug("topics: closing the admin client failed (%s)", type(exc).__name__)
