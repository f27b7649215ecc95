"""A real ledger whose named method fails a few times, as a lost database connection would."""

from __future__ import annotations

from typing import Any

from pipeline.ledger import Ledger


class FlakyLedger:
    def __init__(self, ledger: Ledger, method: str, failures: int = 1) -> None:
        self.ledger = ledger
        self.method = method
        self.failures = failures

    def __getattr__(self, name: str) -> Any:
        real = getattr(self.ledger, name)
        if name != self.method:
            return real

        def flaky(*args: Any) -> Any:
            if self.failures:
                self.failures -= 1
                raise ConnectionError("database went away")
            return real(*args)

        return flaky
