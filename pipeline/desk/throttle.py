"""Login throttling: after a number of failures an account, or a client address, is locked out for a
while, the lockout doubling with each further failure (capped). Known and unknown user names count
alike, so a lockout tells nothing about which accounts exist.

Kept in memory, per desk process: an attacker gains at most one allowance per process and per restart;
nothing about addresses is written anywhere.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

_MAX_TRACKED = 10_000  # past this, entries whose lockout is over are forgotten


@dataclass
class _Failures:
    count: int
    last_s: float


class LoginThrottle:
    def __init__(self, lockout_s: float, lockout_cap_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.lockout_s = lockout_s
        self.lockout_cap_s = lockout_cap_s
        self.clock = clock
        self._failures: dict[str, _Failures] = {}
        self._lock = threading.Lock()

    def _locked_until_s(self, failures: _Failures, allowed: int) -> float:
        if failures.count < allowed:
            return 0.0
        doublings = min(failures.count - allowed, 40)
        return failures.last_s + min(self.lockout_cap_s, self.lockout_s * 2.0 ** doublings)

    def retry_after_s(self, keys: dict[str, int]) -> float:
        """Seconds before any of `keys` (key -> failures allowed) may try again; 0 when none is locked."""
        now = self.clock()
        with self._lock:
            waits = [self._locked_until_s(f, allowed) - now
                     for key, allowed in keys.items() if (f := self._failures.get(key)) is not None]
        return max([0.0, *waits])

    def failed(self, keys: dict[str, int]) -> None:
        now = self.clock()
        with self._lock:
            if len(self._failures) > _MAX_TRACKED:
                self._forget_stale(now)
            for key in keys:
                entry = self._failures.setdefault(key, _Failures(0, now))
                if now - entry.last_s > self.lockout_cap_s:
                    entry.count = 0  # old mistakes are forgiven: only a recent run of them locks out
                entry.count, entry.last_s = entry.count + 1, now

    def succeeded(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)

    def _forget_stale(self, now: float) -> None:
        stale = [k for k, f in self._failures.items() if now - f.last_s > self.lockout_cap_s]
        for key in stale:
            del self._failures[key]
