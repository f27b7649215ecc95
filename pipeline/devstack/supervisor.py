"""The one supervisor of the pipeline's processes, for `erasure up`, the end-to-end tests and the bench.

Each child is `python -m pipeline.cli ARGS` under a name, with the supervisor's
environment. With a log directory each child writes to its own file there (and
`wait_log` can watch it); without one, children share the supervisor's output.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from pipeline.devstack.probes import wait_until

log = logging.getLogger(__name__)


class ChildExited(AssertionError):
    """A child died while something waited on it; an AssertionError so a waiting test fails, not errors."""


class Supervisor:
    def __init__(self, env: Mapping[str, str], log_dir: Path | None = None) -> None:
        self.env = dict(env)
        self.log_dir = log_dir
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._args: dict[str, tuple[str, ...]] = {}
        if log_dir is not None:
            log_dir.mkdir(parents=True, exist_ok=True)

    def log_path(self, name: str) -> Path:
        if self.log_dir is None:
            raise ValueError("this supervisor keeps no log files: give it a log_dir")
        return self.log_dir / f"{name.replace(':', '-')}.log"

    def log_size(self, name: str) -> int:
        """How far the child's log goes now: a later `wait_log(..., after=)` reads only what follows."""
        path = self.log_path(name)
        return path.stat().st_size if path.exists() else 0

    def spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        """Start `erasure ARGS` as `name` (replacing the record of an earlier child of that name)."""
        self._args[name] = args
        return self._launch(name)

    def _launch(self, name: str) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "pipeline.cli", *self._args[name]]
        if self.log_dir is None:
            process = subprocess.Popen(command, env=self.env)
        else:
            with open(self.log_path(name), "ab") as handle:  # the child holds its own descriptor
                process = subprocess.Popen(command, env=self.env, stdout=handle, stderr=subprocess.STDOUT)
        self.processes[name] = process
        return process

    def restart_exited(self, stopping: Callable[[], bool] = lambda: False) -> list[str]:
        """Start again each child that exited, unless the supervisor is stopping; their names."""
        restarted = []
        for name, process in list(self.processes.items()):
            if process.poll() is not None and not stopping():
                log.warning("%s exited with %s; restarting", name, process.returncode)
                self._launch(name)
                restarted.append(name)
        return restarted

    def supervise(self, stopping: Callable[[], bool], poll_s: float = 0.5) -> None:
        """Keep every child running until `stopping()` is true (a signal handler usually sets it)."""
        while not stopping():
            time.sleep(poll_s)
            self.restart_exited(stopping)

    def wait_log(self, name: str, marker: str, timeout_s: float = 60.0, after: int = 0) -> None:
        """Wait until `marker` appears in the child's log past byte `after`; ChildExited if it dies."""
        process, path = self.processes[name], self.log_path(name)

        def seen() -> bool:
            if process.poll() is not None:
                raise ChildExited(f"{name} exited with {process.returncode}:\n"
                                  + path.read_text(errors="replace")[-3000:])
            return marker in path.read_text(errors="replace")[after:]

        wait_until(seen, timeout_s, f"{marker!r} in the log of {name}")

    def kill(self, name: str) -> None:
        """SIGKILL one child, as a crash would; it is not restarted unless supervised."""
        self.processes[name].send_signal(signal.SIGKILL)
        self.processes[name].wait(10)

    def pids(self) -> dict[str, int]:
        return {name: process.pid for name, process in self.processes.items()}

    def stop_all(self, timeout_s: float = 15.0) -> None:
        """SIGTERM every child; SIGKILL those still running after `timeout_s` in all."""
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
