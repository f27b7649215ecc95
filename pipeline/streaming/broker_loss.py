"""The stream worker after a broker lost its state: it leaves, for its supervisor to start it afresh.

faust's consumer offsets refer to logs the broker no longer has, and a worker that lived on through
that was seen to hang in its orderly stop on a group the broker forgot. So the worker leaves at once,
like a crash: every step of the pipeline is at-least-once and idempotent, and the worker keeps no
state of its own (the ledger is the record), so the next one starts clean.
"""

from __future__ import annotations

import logging
import os
from typing import NoReturn

log = logging.getLogger(__name__)

# The exit code of a worker that leaves for this (EX_TEMPFAIL: start it again).
EXIT_BROKER_LOST = 75


def leave_afresh(why: str) -> NoReturn:
    """Log why and end the process now with `EXIT_BROKER_LOST`."""
    log.critical("%s: the stream worker leaves (exit code %d) for its supervisor to start it afresh",
                 why, EXIT_BROKER_LOST)
    logging.shutdown()  # the lines above reach the log before the process ends
    os._exit(EXIT_BROKER_LOST)
