"""Runs the real pipeline as separate processes (`erasure worker`, `erasure connector ...`) for the tests.

The processes and the demo systems are `pipeline.devstack.local.LocalPipeline`'s;
this adds what only tests need: a webhook receiver checking every signature, and
waits on the ledger and the completions topic.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.devstack.demo import Person
from pipeline.devstack.local import BREVO_KEY, LocalPipeline
from pipeline.devstack.probes import read_topic, wait_until
from pipeline.ledger import Ledger, RequestView, open_ledger
from pipeline.streaming import topics
from tests.webhook_receiver import SECRET, Receiver

__all__ = ["BREVO_KEY", "RunningPipeline", "read_topic", "wait_all_final", "wait_until"]


class RunningPipeline(LocalPipeline):
    def __init__(self, root: Path, bootstrap: str, database_url: str, people: list[Person],
                 extra_env: dict[str, str] | None = None, extra_systems: list[dict[str, Any]] | None = None,
                 ) -> None:
        self.webhook = Receiver()
        super().__init__(root, bootstrap, database_url, people, {
            **(extra_env or {}), "ERASURE_WEBHOOK_URL": self.webhook.url, "ERASURE_WEBHOOK_SECRET": SECRET,
        }, extra_systems)
        self.ledger = open_ledger(database_url)

    def stop(self) -> None:
        super().stop()
        self.webhook.stop()
        self.ledger.close()

    def submit(self, email: str, request_id: str | None = None,
               received_at: datetime | None = None) -> str:
        return self.intake.submit({"email": email}, received_at or datetime.now(UTC),
                                  request_id=request_id)

    def wait_final(self, request_id: str, timeout_s: float = 60.0) -> RequestView:
        def final() -> RequestView | None:
            view = self.ledger.request(request_id, datetime.now(UTC))
            return view if view is not None and view.status != "in_progress" else None

        return wait_until(final, timeout_s, f"request {request_id} to finish")  # type: ignore[no-any-return]

    def completed_events(self, request_id: str) -> list[dict[str, Any]]:
        return [json.loads(r.value) for r in read_topic(self.bootstrap, topics.COMPLETED)
                if r.key == request_id.encode()]


def wait_all_final(ledger: Ledger, request_ids: list[str], timeout_s: float) -> None:
    """Wait until none of these requests is in progress in the ledger."""
    def all_final() -> bool:
        now = datetime.now(UTC)
        views = [ledger.request(rid, now) for rid in request_ids]
        return all(v is not None and v.status != "in_progress" for v in views)

    wait_until(all_final, timeout_s, f"all {len(request_ids)} requests to finish", interval_s=1.0)
