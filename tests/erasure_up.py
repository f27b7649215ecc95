"""`erasure up` in a process group of its own, as an operator runs it, for the tests that drive it.

`ErasureUp` starts it in a directory with a clean environment (no broker or ledger from the test
session: its embedded defaults) and a free desk port, runs other `erasure` commands beside it, waits
for a request to finish, and stops it with SIGTERM (SIGKILL after 30 s), keeping its log.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import TracebackType
from typing import Any

from pipeline.devstack.broker import free_port
from tests.harness import wait_until


def clean_env() -> dict[str, str]:
    """This process's environment without the test session's broker, ledger and settings."""
    return {k: v for k, v in os.environ.items()
            if k not in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL") and not k.startswith("ERASURE_")}


class ErasureUp:
    def __init__(self, home: Path, command_timeout_s: float = 60.0) -> None:
        self.home = home
        self.command_timeout_s = command_timeout_s
        self.env = clean_env()
        self.env["ERASURE_DESK_PORT"] = str(free_port())
        self.log_path = home / "up.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None, "not started"
        return self.process.pid

    @property
    def desk_url(self) -> str:
        return f"http://127.0.0.1:{self.env['ERASURE_DESK_PORT']}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> ErasureUp:
        with open(self.log_path, "wb") as log:  # the child keeps its own descriptor
            self.process = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "up"], cwd=self.home,
                                            env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()

    def stop(self) -> int:
        """SIGTERM to its process group, SIGKILL if it has not ended 30 s later; its exit code."""
        assert self.process is not None, "not started"
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        return self.process.returncode

    def erasure(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Another `erasure` command, run beside it (same directory, same environment)."""
        return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], cwd=self.home, env=self.env,
                              capture_output=True, text=True, timeout=self.command_timeout_s)

    def wait_finished(self, request_id: str, timeout_s: float, interval_s: float = 1.0) -> dict[str, Any]:
        """`erasure status ID --json` once the request is no longer in progress."""
        def finished() -> dict[str, Any] | None:
            shown = self.erasure("status", request_id, "--json")
            if shown.returncode != 0:
                return None
            view: dict[str, Any] = json.loads(shown.stdout)
            return view if view["status"] != "in_progress" else None

        view: dict[str, Any] = wait_until(finished, timeout_s, f"request {request_id} to finish",
                                          interval_s=interval_s)
        return view
