"""The home page's charts, computed and drawn at most once a minute per desk process, never while a
page waits.

On a ledger of a million requests the overview's queries take about a second and drawing six charts
a few hundred milliseconds (and the first drawing of a process imports matplotlib): no page waits
for that. A drawing older than a minute, or none yet, is drawn again in the background; officers
opening the home page meanwhile share the last drawing, or, before the first one, a placeholder
asking them to reload in a few seconds (the first caller waits `first_wait_s` at most, so a small
ledger's first page usually has its charts). The page says when its figures were read.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import sqlalchemy as sa

from pipeline.ledger.overview import overview

if TYPE_CHECKING:
    from pipeline.desk.charts import Chart

MAX_AGE_S = 60.0
FIRST_WAIT_S = 0.1  # well inside the home page's 200 ms budget
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DrawnOverview:
    read_at: datetime
    charts: list[Chart]


class OverviewCache:
    """The last drawing, and at most one drawing under way, in the background: a caller gets the last
    drawing at once (None before the first one is done), and one older than `max_age_s` (or none yet)
    starts a drawing at that caller's `now` for the callers after it."""

    def __init__(self, engine: sa.Engine, max_age_s: float = MAX_AGE_S, first_wait_s: float = FIRST_WAIT_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.engine = engine
        self.max_age_s = max_age_s
        self.first_wait_s = first_wait_s
        self.clock = clock
        self._state = threading.Lock()
        self._drawn: tuple[float, DrawnOverview] | None = None
        self._refreshing: threading.Thread | None = None

    def _draw(self, now: datetime) -> tuple[float, DrawnOverview]:
        from pipeline.desk.charts import overview_charts  # matplotlib: ~70 MB, paid when first drawn

        started = self.clock()
        return started, DrawnOverview(now, overview_charts(overview(self.engine, now)))

    def _refresh(self, now: datetime) -> None:
        try:
            drawn = self._draw(now)
            with self._state:
                self._drawn = drawn
        except Exception:  # the last drawing (if any) stays; the next caller tries again
            log.warning("overview: drawing failed", exc_info=True)
        finally:
            with self._state:
                self._refreshing = None

    def get(self, now: datetime) -> DrawnOverview | None:
        """The last drawing, or None while the first is under way; a drawing older than `max_age_s`
        (or none) starts one at `now` in the background, which the callers after it get."""
        with self._state:
            drawn = self._drawn
            stale = drawn is None or self.clock() - drawn[0] >= self.max_age_s
            if stale and self._refreshing is None:
                self._refreshing = threading.Thread(target=self._refresh, args=(now,), daemon=True,
                                                    name="overview-refresh")
                self._refreshing.start()
            refreshing = self._refreshing
        if drawn is None and refreshing is not None:
            refreshing.join(self.first_wait_s)
            with self._state:
                drawn = self._drawn
        return drawn[1] if drawn is not None else None

    def wait(self, timeout_s: float = 30.0) -> None:
        """Until the drawing under way (if any) is done (for tests and the bench)."""
        with self._state:
            refreshing = self._refreshing
        if refreshing is not None:
            refreshing.join(timeout_s)
