"""Who runs a lane on this machine: a sole owner alone, group members side by side.

A sole owner (`ERASURE_CONNECTOR_SOLE_OWNER=true`) takes every partition of its system's
task topic without joining the consumer group, so nothing in Kafka stops a second process
from doing the same, or a group member from taking partitions beside it: each would run
every task it reads, and every erasure would be done twice (harmless for the data, which
is idempotent, but every processor call doubled and a second outcome for each).

Each connector process claims its systems with a lock file under `<home>/run`: a sole owner
exclusively, a group member shared. A second claim that does not fit is refused with the
reason and what to do. The kernel drops a process's locks when it dies, SIGKILL included,
so a restarted process is never refused by the one it replaces. The lock covers processes
that share a home directory on one machine (`erasure up`, a supervisor, a shell beside
them); across machines or containers nothing checks it: run every process of a shared
system with `ERASURE_CONNECTOR_SOLE_OWNER=false` (README, "Scaling out").
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
from pathlib import Path
from typing import IO

from schemas.models import SYSTEM_ID_PATTERN

log = logging.getLogger(__name__)

SOLE_OWNER_SETTING = "ERASURE_CONNECTOR_SOLE_OWNER"


class LaneClaimed(RuntimeError):
    """Another process of this machine already runs the system in a way this one cannot join."""


class LaneClaims:
    """The lock files this process holds, one per system, until it exits (or `release()`)."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self._held: dict[str, IO[str]] = {}

    def claim(self, system: str, sole_owner: bool) -> None:
        """Lock the system's file: exclusively as sole owner, shared as a member; or raise LaneClaimed."""
        if not re.fullmatch(SYSTEM_ID_PATTERN, system):
            return  # no register has it: the connector's start-up says so
        path = self.run_dir / f"lane.{system}.lock"
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            handle = open(path, "a+")  # noqa: SIM115 - held open for the life of the process
        except OSError as exc:  # a read-only home (a container): run, unchecked, rather than not at all
            log.warning("connector %s: cannot write %s (%s): a second process of it here goes unnoticed",
                        system, path, type(exc).__name__)
            return
        try:
            fcntl.flock(handle, (fcntl.LOCK_EX if sole_owner else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holders = handle.read().split()
            handle.close()
            raise LaneClaimed(_refusal(system, sole_owner, holders, path)) from None
        if sole_owner:
            handle.truncate(0)
        handle.write(f"{'sole-owner' if sole_owner else 'member'}:{os.getpid()}\n")
        handle.flush()
        self._held[system] = handle

    def release(self) -> None:
        for handle in self._held.values():
            handle.close()
        self._held.clear()


def _alive(holder: str) -> bool:
    """Whether a `kind:pid` line names a running process (members of past runs leave their line)."""
    try:
        os.kill(int(holder.rpartition(":")[2]), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def _refusal(system: str, sole_owner: bool, holders: list[str], path: Path) -> str:
    """What is wrong and what to do, naming the other processes (pids) when they said."""
    labels = {"sole-owner": "its sole owner", "member": "a group member"}
    others = ", ".join(f"{labels.get(kind, kind)} (pid {pid})" for kind, _, pid in
                       (h.partition(":") for h in holders if _alive(h))) or "another process"
    if sole_owner:
        problem = (f"connector {system}: cannot run as its sole owner ({SOLE_OWNER_SETTING}=true): "
                   f"{others} already runs it on this machine (lock {path}). A sole owner takes every "
                   "partition, so both would erase every task.")
    else:
        problem = (f"connector {system}: cannot join its consumer group: {others} takes every "
                   f"partition on this machine (lock {path}), so both would erase every task.")
    return (f"{problem} Stop the other process, or run every process of {system} with "
            f"{SOLE_OWNER_SETTING}=false so that they share its partitions through the consumer group.")


def claim_lanes(run_dir: Path, systems: list[str], sole_owner: bool) -> LaneClaims:
    """Claim every system of this process, or none (LaneClaimed names the first that is taken)."""
    claims = LaneClaims(run_dir)
    try:
        for system in systems:
            claims.claim(system, sole_owner)
    except LaneClaimed:
        claims.release()
        raise
    return claims
