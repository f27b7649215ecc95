"""Liveness: each long-running process says that its loops turn and whether their work moves.

A process started by a `Supervisor` is given a heartbeat file (`ERASURE_HEARTBEAT_FILE`,
`<home>/run/<name>.heartbeat`). Each loop of the process (a connector's poll loop, the faust
worker's heartbeat timer, the desk's background task) beats it with how much work it holds and
how much it has finished; the file is one JSON object, rewritten at most once a second:

    {"pid": 4242, "expected": ["brevo", "site-db"],
     "loops": {"brevo": {"beat_at": 1767.0, "pending": 3, "progress_at": 1765.2}, "site-db": {...}}}

A process that runs several loops of the same kind (`erasure connector` runs every lane it is
given, a thread each: `erasure up` runs them all in one process by default) has one entry per
loop, named after its lane, and lists the loops it starts in `expected` before any turns.

The supervisor reads it (`judge`): a loop that has not beaten for the stall threshold is hung
(stopped, deadlocked, stuck in a call without timeout); a loop that beats, holds work and has
finished none of it for the threshold is stuck; an expected loop that has not beaten once by the
first-beat allowance never started. In each case the whole process is restarted (every loop it
hosts) and the reason names the loop. A clock is wall time (`time.time()`): the writer and the
reader are different processes.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

WRITE_INTERVAL_S = 1.0


@dataclass
class LoopState:
    beat_at: float
    pending: int
    progress_at: float
    done: int


class LoopBeat:
    """One loop's beat: call `beat` on every turn of the loop (cheap: the file is written once a second)."""

    def __init__(self, owner: HeartbeatFile | None, name: str) -> None:
        self.owner = owner
        self.name = name

    def beat(self, pending: int = 0, done: int = 0) -> None:
        """`pending`: work this loop holds and could do now; `done`: a counter of work finished so far."""
        if self.owner is not None:
            self.owner.record(self.name, pending, done)


class HeartbeatFile:
    """The heartbeat file of this process, shared by its loops (thread-safe)."""

    def __init__(self, path: Path, write_interval_s: float = WRITE_INTERVAL_S) -> None:
        self.path = path
        self.write_interval_s = write_interval_s
        self._lock = threading.Lock()
        self._loops: dict[str, LoopState] = {}
        self._expected: list[str] = []
        self._written_at = 0.0
        path.parent.mkdir(parents=True, exist_ok=True)

    def loop(self, name: str) -> LoopBeat:
        return LoopBeat(self, name)

    def expect(self, names: list[str]) -> None:
        """Say which loops this process starts (written now): one that never beats is seen too."""
        with self._lock:
            self._expected = list(names)
            document = self._document()
        self._write(document)

    def record(self, name: str, pending: int, done: int) -> None:
        now = time.time()
        with self._lock:
            state = self._loops.get(name)
            if state is None:
                state = self._loops[name] = LoopState(now, pending, now, done)
            # Progress: nothing is waiting, or something finished since the last beat.
            if pending == 0 or done != state.done:
                state.progress_at = now
            state.beat_at, state.pending, state.done = now, pending, done
            if now - self._written_at < self.write_interval_s:
                return
            self._written_at = now
            document = self._document()
        self._write(document)

    def _document(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "expected": self._expected, "loops": {
            loop: {"beat_at": s.beat_at, "pending": s.pending, "progress_at": s.progress_at}
            for loop, s in self._loops.items()}}

    def _write(self, document: dict[str, Any]) -> None:
        scratch = self.path.with_name(f"{self.path.name}.{os.getpid()}.{threading.get_ident()}")
        scratch.write_text(json.dumps(document))
        os.replace(scratch, self.path)  # readers never see half a file


_files: dict[Path, HeartbeatFile] = {}
_files_lock = threading.Lock()


def _owner(heartbeat_file: Path) -> HeartbeatFile:
    with _files_lock:
        owner = _files.get(heartbeat_file)
        if owner is None:
            owner = _files[heartbeat_file] = HeartbeatFile(heartbeat_file)
    return owner


def loop_beat(heartbeat_file: Path | None, name: str) -> LoopBeat:
    """The beat of loop `name` in this process's heartbeat file; one that does nothing when there is none."""
    return LoopBeat(None, name) if heartbeat_file is None else _owner(heartbeat_file).loop(name)


def expect_loops(heartbeat_file: Path | None, names: list[str]) -> None:
    """Declare the loops this process starts (the lanes of a connector process); nothing without a file."""
    if heartbeat_file is not None:
        _owner(heartbeat_file).expect(names)


# -- the supervisor's side ----------------------------------------------------------------
def read(path: Path) -> dict[str, Any] | None:
    """The heartbeat document, or None when there is none yet (or it cannot be read)."""
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return document if isinstance(document, dict) else None


def judge(document: dict[str, Any] | None, pid: int, started_at: float, now: float, stall_s: float,
          first_beat_s: float) -> str | None:
    """Why the process `pid` (started at `started_at`) should be restarted, or None while it is well."""
    if document is None or document.get("pid") != pid:
        silent_s = now - started_at
        return f"no heartbeat {silent_s:.0f} s after it started" if silent_s > first_beat_s else None
    loops = document.get("loops", {})
    for name in sorted(set(document.get("expected", [])) - set(loops)):
        if now - started_at > first_beat_s:
            return f"its {name} loop has not turned once {now - started_at:.0f} s after it started"
    for name, loop in sorted(loops.items()):
        silent_s = now - float(loop["beat_at"])
        if silent_s > stall_s:
            return f"its {name} loop has not turned for {silent_s:.0f} s"
        stuck_s = now - float(loop["progress_at"])
        if int(loop["pending"]) > 0 and stuck_s > stall_s:
            return f"its {name} loop holds {loop['pending']} task(s) and finished none for {stuck_s:.0f} s"
    return None
