"""The home page's charts, computed and drawn at most once a minute per desk process.

On a ledger of a million requests the overview's queries take seconds (the percentiles sort half a
year of answers) and drawing six charts a few hundred milliseconds: officers opening the home page
again and again, or several at once, share one drawing instead of each paying for it, and none but
the first waits for one: a drawing older than a minute is shown while the next is drawn in the
background. The page says when its figures were read.
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
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DrawnOverview:
    read_at: datetime
    charts: list[Chart]


class OverviewCache:
    """The last drawing, and at most one drawing under way. Only the very first caller waits for a
    drawing; later ones get the last drawing at once, and one older than `max_age_s` is drawn again
    in the background for the callers after them (the page says when its figures were read)."""

    def __init__(self, engine: sa.Engine, max_age_s: float = MAX_AGE_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.engine = engine
        self.max_age_s = max_age_s
        self.clock = clock
        self._first = threading.Lock()  # callers arriving before the first drawing wait for it
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
        except Exception:  # the last drawing stays; the next caller tries again
            log.warning("overview: drawing again failed", exc_info=True)
        finally:
            with self._state:
                self._refreshing = None

    def get(self, now: datetime) -> DrawnOverview:
        """The last drawing (drawn at `now` if there is none yet); a drawing older than `max_age_s`
        starts one at `now` in the background, which the callers after it get."""
        with self._state:
            drawn = self._drawn
            if drawn is not None:
                if self.clock() - drawn[0] >= self.max_age_s and self._refreshing is None:
                    self._refreshing = threading.Thread(target=self._refresh, args=(now,), daemon=True,
                                                        name="overview-refresh")
                    self._refreshing.start()
                return drawn[1]
        with self._first:
            with self._state:
                if self._drawn is not None:
                    return self._drawn[1]
            drawn = self._draw(now)
            with self._state:
                self._drawn = drawn
            return drawn[1]

    def wait(self, timeout_s: float = 30.0) -> None:
        """Until the drawing under way (if any) is done (for tests and the bench)."""
        with self._state:
            refreshing = self._refreshing
        if refreshing is not None:
            refreshing.join(timeout_s)
