"""The real pipeline as separate processes on this machine, over the demo systems, for tests and the bench.

The caller brings a broker and a ledger database; this seeds a fake Brevo and a
SQLite site database with the given people, writes their register, and runs the
router/aggregator, the connector workers and (`start(desk=True)`) the desk under one
`Supervisor`, as `erasure up` does: each connector process is its systems' sole owner, and
every child beats a heartbeat file under `<home>/run`. Killed children stay dead unless
`supervise()` runs the supervisor's loop in a thread.

Scaled out (`workers`, `processes_per_lane` above 1), it runs that many faust workers
(`worker`, `worker-2`, ...) and that many processes for each of `OWN_PROCESS_SYSTEMS`
(`connector-brevo`, `connector-brevo-2`, ...), every connector a member of its lane's
consumer group (`ERASURE_CONNECTOR_SOLE_OWNER=false`), as docker-compose's `--scale` does.
"""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path
from typing import Any, Self

import yaml

from pipeline.crypto import init_keys, load_keys
from pipeline.devstack.broker import free_port
from pipeline.devstack.demo import DEMO_BREVO_KEY_ENV, Person, demo_systems, seed_brevo, seed_site_database
from pipeline.devstack.fake_brevo import FakeBrevo
from pipeline.devstack.supervisor import Supervisor
from pipeline.intake import IntakeClient
from pipeline.kafka_clients import ensure_topics
from pipeline.signing import INTAKE
from pipeline.signing_keys import ensure_signers, load_signer
from pipeline.streaming import topics
from pipeline.wiring import signer_ids

BREVO_KEY = "xkeysib-e2e-key"
# These run a process each (tests kill them); any other system shares one process, a thread each.
OWN_PROCESS_SYSTEMS = ("site-db", "brevo")
STOP_TIMEOUT_S = 20.0


class LocalPipeline:
    def __init__(self, root: Path, bootstrap: str, database_url: str, people: list[Person],
                 extra_env: dict[str, str] | None = None, extra_systems: list[dict[str, Any]] | None = None,
                 site_url: str | None = None, stall_s: float = 60.0, workers: int = 1,
                 processes_per_lane: int = 1) -> None:
        if workers < 1 or processes_per_lane < 1:
            raise ValueError("workers and processes_per_lane must be at least 1")
        self.root = root
        self.workers = workers
        self.processes_per_lane = processes_per_lane
        self.bootstrap = bootstrap
        self.database_url = database_url
        self.home = root / "home"
        init_keys(self.home / "keys")
        self.keys = load_keys(self.home / "keys")
        self.brevo = FakeBrevo({BREVO_KEY})
        self.brevo.start()
        seed_brevo(self.brevo.url, BREVO_KEY, people)
        self.site_url = site_url or f"sqlite:///{root / 'site.db'}"
        seed_site_database(self.site_url, people)
        self.systems_file = root / "systems.yaml"
        register = demo_systems(self.site_url, self.brevo.url)
        register["systems"] += extra_systems or []  # type: ignore[operator]
        self.system_ids: list[str] = [s["id"] for s in register["systems"]]  # type: ignore[attr-defined]
        self.systems_file.write_text(yaml.safe_dump(register))
        self.signers_file = self.home / "keys" / "signers.json"
        ensure_signers(self.signers_file, self.home / "keys" / "signing", signer_ids(self.system_ids))
        self.desk_port = free_port()
        self.supervisor = Supervisor({
            **os.environ,
            "ERASURE_HOME_DIR": str(self.home),
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "DATABASE_URL": database_url,
            "ERASURE_SYSTEMS_FILE": str(self.systems_file),
            DEMO_BREVO_KEY_ENV: BREVO_KEY,
            "ERASURE_REDRIVE_CHECK_INTERVAL_S": "1",
            "ERASURE_RETRY_IN_PROCESS_MAX_WAIT_S": "1",
            # Processes sharing a lane must share it through its group: sole owners would each take it all.
            "ERASURE_CONNECTOR_SOLE_OWNER": "true" if processes_per_lane == 1 else "false",
            "ERASURE_DESK_PORT": str(self.desk_port),
            "ERASURE_DESK_COOKIE_SECURE": "false",
            **(extra_env or {}),
        }, root / "logs", run_dir=self.home / "run", stall_s=stall_s)
        self._supervising = threading.Event()
        self._supervisor_thread: threading.Thread | None = None
        self.signing_dir = self.home / "keys" / "signing"
        self.intake = IntakeClient(bootstrap, self.keys.intake_public, load_signer(self.signing_dir, INTAKE))
        ensure_topics(bootstrap, topics.all_topics(self.system_ids), 4)

    @property
    def env(self) -> dict[str, str]:
        return self.supervisor.env

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def processes(self) -> dict[str, subprocess.Popen[bytes]]:
        return self.supervisor.processes

    def log_path(self, name: str) -> Path:
        return self.supervisor.log_path(name)

    def spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        return self.supervisor.spawn(name, *args)

    def wait_log(self, name: str, marker: str, timeout_s: float = 60.0, after: int = 0) -> None:
        self.supervisor.wait_log(name, marker, timeout_s, after)

    def start_connector(self, system: str, number: int = 1, timeout_s: float = 60.0) -> str:
        """Start (again) a connector process of one system (`number` above 1: one more member of
        its lane's group) and wait until it has its partitions; its name."""
        name = _numbered(f"connector-{system}", number)
        offset = self.supervisor.log_size(name)
        self.spawn(name, "connector", system)
        self.wait_log(name, "assigned", timeout_s, after=offset)
        return name

    @property
    def desk_url(self) -> str:
        return f"http://127.0.0.1:{self.desk_port}"

    @property
    def worker_names(self) -> list[str]:
        return [_numbered("worker", n) for n in range(1, self.workers + 1)]

    def lane_names(self, system: str) -> list[str]:
        """The names of the processes of one of `OWN_PROCESS_SYSTEMS`."""
        return [_numbered(f"connector-{system}", n) for n in range(1, self.processes_per_lane + 1)]

    def start(self, desk: bool = False) -> Self:
        if desk:
            self.spawn("desk", "desk")
        for name in self.worker_names:
            self.spawn(name, "worker")
        for system in OWN_PROCESS_SYSTEMS:
            for name in self.lane_names(system):
                self.spawn(name, "connector", system)
        others = [s for s in self.system_ids if s not in OWN_PROCESS_SYSTEMS]
        if others:
            self.spawn("connector-others", "connector", *others)
        for name in self.worker_names:
            self.wait_log(name, "Worker]: Ready")
        for system in OWN_PROCESS_SYSTEMS:
            for name in self.lane_names(system):
                self.wait_log(name, "assigned")
        if others:
            self.wait_log("connector-others", "assigned")
        return self

    def kill(self, name: str) -> int:
        return self.supervisor.kill(name)

    def supervise(self, poll_s: float = 0.5) -> None:
        """Restart, from a thread, each child that exits or stalls, as `erasure up` does, until `stop()`."""
        self._supervisor_thread = threading.Thread(
            target=self.supervisor.supervise, args=(self._supervising.is_set, poll_s), daemon=True,
            name="supervisor")
        self._supervisor_thread.start()

    def stop(self) -> None:
        self._supervising.set()
        if self._supervisor_thread is not None:
            self._supervisor_thread.join(10)
        self.supervisor.stop_all(STOP_TIMEOUT_S)
        self.intake.close()
        self.brevo.stop()

    def all_logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.logs.glob("*.log"))


def _numbered(name: str, number: int) -> str:
    """The first process keeps the plain name (tests and the bench know it), the others get a number."""
    return name if number == 1 else f"{name}-{number}"
