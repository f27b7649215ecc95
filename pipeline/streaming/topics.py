"""Topic names: one place, versioned in the name."""

from __future__ import annotations

REQUESTS = "erasure.requests.v1"
OUTCOMES = "erasure.outcomes.v1"
COMPLETED = "erasure.completed.v1"
DEADLETTER = "erasure.deadletter.v1"
NOTIFICATIONS = "erasure.notifications.v1"


def task_topic(system: str) -> str:
    return f"erasure.tasks.{system}.v1"


def all_topics(systems: list[str]) -> list[str]:
    return [REQUESTS, OUTCOMES, COMPLETED, DEADLETTER, NOTIFICATIONS,
            *(task_topic(s) for s in systems)]


def topic_configs(requests_retention_s: float) -> dict[str, dict[str, str]]:
    """The requests topic holds sealed boxes under the intake key: keep it short."""
    return {REQUESTS: {"retention.ms": str(int(requests_retention_s * 1000))}}
