"""Runs the real pipeline as separate processes (`erasure worker`, `erasure connector ...`)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from kafka import KafkaConsumer, TopicPartition

from pipeline.crypto import init_keys, load_keys
from pipeline.devstack.demo import DEMO_BREVO_KEY_ENV, Person, demo_systems, seed_brevo, seed_site_database
from pipeline.devstack.fake_brevo import FakeBrevo
from pipeline.intake import IntakeClient
from pipeline.kafka_clients import ensure_topics
from pipeline.ledger import RequestView, open_ledger
from pipeline.streaming import topics
from tests.webhook_receiver import SECRET, Receiver

BREVO_KEY = "xkeysib-e2e-key"


def wait_until(check: Callable[[], Any], timeout_s: float, what: str, interval_s: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(interval_s)


def read_topic(bootstrap: str, topic: str, idle_s: float = 1.5) -> list[Any]:
    """Every record of a topic, from the beginning, without joining a group."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             auto_offset_reset="earliest")
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        assigned = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(assigned)
        consumer.seek_to_beginning(*assigned)
        records: list[Any] = []
        last_new = time.monotonic()
        while time.monotonic() - last_new < idle_s:
            batch = consumer.poll(timeout_ms=200)
            for items in batch.values():
                records.extend(items)
                last_new = time.monotonic()
        return records
    finally:
        consumer.close()


class RunningPipeline:
    def __init__(self, root: Path, bootstrap: str, database_url: str, people: list[Person],
                 extra_env: dict[str, str] | None = None, extra_systems: list[dict[str, Any]] | None = None,
                 ) -> None:
        self.root = root
        self.bootstrap = bootstrap
        self.database_url = database_url
        self.home = root / "home"
        self.logs = root / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        init_keys(self.home / "keys")
        self.keys = load_keys(self.home / "keys")
        self.brevo = FakeBrevo({BREVO_KEY})
        self.brevo.start()
        seed_brevo(self.brevo.url, BREVO_KEY, people)
        self.site_url = f"sqlite:///{root / 'site.db'}"
        seed_site_database(self.site_url, people)
        self.systems_file = root / "systems.yaml"
        register = demo_systems(self.site_url, self.brevo.url)
        register["systems"] += extra_systems or []  # type: ignore[operator]
        self.system_ids = [s["id"] for s in register["systems"]]  # type: ignore[attr-defined]
        self.systems_file.write_text(yaml.safe_dump(register))
        self.env = {
            **os.environ,
            "ERASURE_HOME_DIR": str(self.home),
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "DATABASE_URL": database_url,
            "ERASURE_SYSTEMS_FILE": str(self.systems_file),
            DEMO_BREVO_KEY_ENV: BREVO_KEY,
            "ERASURE_REDRIVE_CHECK_INTERVAL_S": "1",
            "ERASURE_RETRY_IN_PROCESS_MAX_WAIT_S": "1",
            **(extra_env or {}),
        }
        self.webhook = Receiver()
        self.env.update({"ERASURE_WEBHOOK_URL": self.webhook.url, "ERASURE_WEBHOOK_SECRET": SECRET})
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.ledger = open_ledger(database_url)
        self.intake = IntakeClient(bootstrap, self.keys.intake_public)
        ensure_topics(bootstrap, topics.all_topics(self.system_ids), 4)

    def log_path(self, name: str) -> Path:
        return self.logs / f"{name.replace(':', '-')}.log"

    def spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        handle = open(self.log_path(name), "ab")  # noqa: SIM115 - owned by the child
        process = subprocess.Popen([sys.executable, "-m", "pipeline.cli", *args], env=self.env,
                                   stdout=handle, stderr=subprocess.STDOUT)
        handle.close()
        self.processes[name] = process
        return process

    def wait_log(self, name: str, marker: str, timeout_s: float = 60.0, after: int = 0) -> None:
        process = self.processes[name]

        def seen() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"{name} exited with {process.returncode}:\n"
                                     + self.log_path(name).read_text()[-3000:])
            return marker in self.log_path(name).read_text()[after:]

        wait_until(seen, timeout_s, f"{marker!r} in the log of {name}")

    def start_connector(self, system: str) -> None:
        name = f"connector-{system}"
        offset = self.log_path(name).stat().st_size if self.log_path(name).exists() else 0
        self.spawn(name, "connector", system)
        self.wait_log(name, "assigned", after=offset)

    def start(self) -> RunningPipeline:
        self.spawn("worker", "worker")
        for system in ("site-db", "brevo"):
            self.spawn(f"connector-{system}", "connector", system)
        others = [s for s in self.system_ids if s not in ("site-db", "brevo")]
        if others:  # the rest share one process, a thread each
            self.spawn("connector-others", "connector", *others)
        self.wait_log("worker", "Worker]: Ready")
        for system in ("site-db", "brevo"):
            self.wait_log(f"connector-{system}", "assigned")
        if others:
            self.wait_log("connector-others", "assigned")
        return self

    def kill(self, name: str) -> None:
        self.processes[name].send_signal(signal.SIGKILL)
        self.processes[name].wait(10)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
        self.intake.close()
        self.brevo.stop()
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

    def all_logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.logs.glob("*.log"))
