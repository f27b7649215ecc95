"""Topic names: one place, versioned in the name; and the `TopicKeeper`, which creates them again
when the broker lost them."""

from __future__ import annotations

import contextlib
import logging
import threading
from dataclasses import dataclass
from typing import Any

from pipeline.kafka_clients import admin
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


@dataclass(frozen=True)
class TopicCheck:
    created: list[str]  # missing, created now
    lost: list[str]  # seen at an earlier check, and since gone or replaced (another topic id)


class TopicKeeper:
    """Creates the topics it keeps that the broker does not have, and tells which ones it lost.

    A broker that restarts without its storage (the embedded Tansu on memory storage) comes back with
    no topic. Tansu then creates a topic on its first produce, with its default partition count and
    none of our configs: `check()`, on a short timer, puts ours back (`partitions`, one for the
    `single_partition` topics such as faust's leader topic). A topic seen at an earlier check that is
    gone, or that came back under another topic id (a client's produce made it again first), is
    reported `lost`. One admin client is kept open between checks, replaced after an error.
    """

    def __init__(self, bootstrap: str, topics: list[str], partitions: int, replication: int = 1,
                 configs: dict[str, dict[str, str]] | None = None, *, single_partition: tuple[str, ...] = (),
                 security: KafkaSecurity = PLAINTEXT) -> None:
        self.bootstrap = bootstrap
        self.topics = [*topics, *(t for t in single_partition if t not in topics)]
        self.single_partition = set(single_partition)
        self.partitions, self.replication = partitions, replication
        self.configs = configs or {}
        self.security = security
        self._client: Any = None
        self._ids: dict[str, str | None] = {}  # topic -> its id when last seen
        self._lock = threading.Lock()

    def check(self) -> TopicCheck:
        """Create the missing topics; what was created and what was lost (nothing when the broker
        did not answer: the next check tries again)."""
        from kafka.errors import KafkaError

        with self._lock:
            try:
                if self._client is None:
                    self._client = admin(self.bootstrap, security=self.security,
                                         request_timeout_ms=CHECK_TIMEOUT_MS,
                                         bootstrap_timeout_ms=CHECK_TIMEOUT_MS)
                found = {t["name"]: t.get("topic_id") for t in self._client.describe_topics(self.topics)
                         if t["error_code"] == 0}
                missing = [t for t in self.topics if t not in found]
                if missing:
                    self._create(missing)
            except (KafkaError, OSError) as exc:
                log.warning("topics: the broker did not answer the topic check (%s); trying again later",
                            type(exc).__name__)
                self.close()
                return TopicCheck([], [])
            lost = sorted(t for t, seen in self._ids.items() if found.get(t, "gone") != seen)
            self._ids = {t: topic_id for t, topic_id in found.items()}
        if lost:
            log.error("topics: the broker lost %d topic(s) it had (restarted without its storage?): %s; "
                      "%d created again", len(lost), ", ".join(lost), len(missing))
        elif missing:
            log.info("topics: created %s", ", ".join(missing))
        return TopicCheck(missing, lost)

    def _create(self, names: list[str]) -> None:
        from kafka.admin import NewTopic
        from kafka.errors import TopicAlreadyExistsError

        wanted = [NewTopic(t, 1 if t in self.single_partition else self.partitions, self.replication,
                           topic_configs=self.configs.get(t, {})) for t in names]
        with contextlib.suppress(TopicAlreadyExistsError):  # a client's produce made it first
            self._client.create_topics(wanted)

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception as exc:  # a client already broken: nothing more to release
                log.debug("topics: closing the admin client failed (%s)", type(exc).__name__)
