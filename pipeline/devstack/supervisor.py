"""The one supervisor of the pipeline's processes, for `erasure up`, the end-to-end tests and the bench.

Each child is `python -m pipeline.cli ARGS` under a name, with the supervisor's
environment. With a log directory each child writes to its own file there (and
`wait_log` can watch it); without one, children share the supervisor's output.

With a run directory each child is told to beat `<run dir>/<name>.heartbeat`
(`pipeline.liveness`), an entry per loop: a connector process hosting several lanes
(`erasure up`'s `connectors`) has one per lane. `supervise` restarts a child that exited,
and one whose heartbeat says one of its loops is hung or stuck with work for `stall_s`
(or has not beaten at all `first_beat_s` after the child started), and says so in its log,
naming the loop (the lane); every other lane of that process restarts with it.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from pipeline import liveness
from pipeline.devstack.probes import wait_until

log = logging.getLogger(__name__)


class ChildExited(AssertionError):
    """A child died while something waited on it; an AssertionError so a waiting test fails, not errors."""


class Supervisor:
    def __init__(self, env: Mapping[str, str], log_dir: Path | None = None, run_dir: Path | None = None,
                 stall_s: float = 60.0, first_beat_s: float | None = None) -> None:
        self.env = dict(env)
        self.log_dir = log_dir
        self.run_dir = run_dir
        self.stall_s = stall_s
        # Starting takes longer than a turn of a loop (imports, the group join, faust's recovery).
        self.first_beat_s = first_beat_s if first_beat_s is not None else max(3 * stall_s, 120.0)
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.started_at: dict[str, float] = {}
        self._args: dict[str, tuple[str, ...]] = {}
        self._lock = threading.RLock()  # `supervise` may run in a thread while a test or the bench kills
        for directory in (log_dir, run_dir):
            if directory is not None:
                directory.mkdir(parents=True, exist_ok=True)

    def log_path(self, name: str) -> Path:
        if self.log_dir is None:
            raise ValueError("this supervisor keeps no log files: give it a log_dir")
        return self.log_dir / f"{name.replace(':', '-')}.log"

    def log_size(self, name: str) -> int:
        """How far the child's log goes now: a later `wait_log(..., after=)` reads only what follows."""
        path = self.log_path(name)
        return path.stat().st_size if path.exists() else 0

    def heartbeat_path(self, name: str) -> Path | None:
        return None if self.run_dir is None else self.run_dir / f"{name.replace(':', '-')}.heartbeat"

    def spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        """Start `erasure ARGS` as `name` (replacing the record of an earlier child of that name)."""
        with self._lock:
            self._args[name] = args
            return self._launch(name)

    def _launch(self, name: str) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "pipeline.cli", *self._args[name]]
        env = dict(self.env)
        heartbeat = self.heartbeat_path(name)
        if heartbeat is not None:
            env["ERASURE_HEARTBEAT_FILE"] = str(heartbeat)
        if self.log_dir is None:
            process = subprocess.Popen(command, env=env)
        else:
            with open(self.log_path(name), "ab") as handle:  # the child holds its own descriptor
                process = subprocess.Popen(command, env=env, stdout=handle, stderr=subprocess.STDOUT)
        self.processes[name] = process
        self.started_at[name] = time.time()
        return process

    def restart_exited(self, stopping: Callable[[], bool] = lambda: False) -> list[str]:
        """Start again each child that exited, unless the supervisor is stopping; their names."""
        restarted = []
        with self._lock:
            for name, process in list(self.processes.items()):
                if process.poll() is not None and not stopping():
                    log.warning("%s exited with %s; restarting", name, process.returncode)
                    self._launch(name)
                    restarted.append(name)
        return restarted

    def stalled(self, now: float | None = None) -> dict[str, str]:
        """The running children whose heartbeat says they should be restarted, with the reason."""
        now = time.time() if now is None else now
        found = {}
        with self._lock:
            for name, process in self.processes.items():
                path = self.heartbeat_path(name)
                if path is None or process.poll() is not None:
                    continue
                reason = liveness.judge(liveness.read(path), process.pid, self.started_at[name], now,
                                        self.stall_s, self.first_beat_s)
                if reason is not None:
                    found[name] = reason
        return found

    def restart_stalled(self, stopping: Callable[[], bool] = lambda: False) -> list[str]:
        """SIGKILL and start again each child that is hung or stuck with work; their names."""
        restarted = []
        with self._lock:
            for name, reason in self.stalled().items():
                if stopping():
                    break
                log.warning("%s (pid %d) makes no progress: %s; restarting it", name,
                            self.processes[name].pid, reason)
                self.kill(name)  # SIGKILL ends a stopped (SIGSTOP) process too
                self._launch(name)
                restarted.append(name)
        return restarted

    def supervise(self, stopping: Callable[[], bool], poll_s: float = 1.0,
                  on_turn: Callable[[], object] | None = None) -> None:
        """Keep every child running and moving until `stopping()` is true (a signal handler sets it).

        `on_turn` runs first at each turn, for what the children depend on: `erasure up` passes a
        `devstack.broker.BrokerKeeper`, which starts the embedded broker again when it died."""
        while not stopping():
            time.sleep(poll_s)
            if on_turn is not None and not stopping():
                on_turn()
            self.restart_exited(stopping)
            self.restart_stalled(stopping)

    def wait_log(self, name: str, marker: str, timeout_s: float = 60.0, after: int = 0) -> None:
        """Wait until `marker` appears in the child's log past byte `after`; ChildExited if it dies."""
        process, path = self.processes[name], self.log_path(name)

        def seen() -> bool:
            if process.poll() is not None:
                raise ChildExited(f"{name} exited with {process.returncode}:\n"
                                  + path.read_text(errors="replace")[-3000:])
            return marker in path.read_text(errors="replace")[after:]

        wait_until(seen, timeout_s, f"{marker!r} in the log of {name}")

    def kill(self, name: str) -> int:
        """SIGKILL one child, as a crash would; it is not restarted unless supervised. Its pid."""
        with self._lock:
            process = self.processes[name]
            process.send_signal(signal.SIGKILL)
            process.wait(10)
            return process.pid

    def pids(self) -> dict[str, int]:
        return {name: process.pid for name, process in self.processes.items()}

    def stop_all(self, timeout_s: float = 15.0) -> None:
        """SIGTERM every child; SIGKILL those still running after `timeout_s` in all."""
        with self._lock:
            self._stop_all(timeout_s)

    def _stop_all(self, timeout_s: float) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + timeout_s
        for process in self.processes.values():
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
