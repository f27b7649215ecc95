"""The home page's charts, computed and drawn at most once a minute per desk process.

On a ledger of a million requests the overview's queries take a second or more (the percentiles sort
half a year of answers) and drawing six charts a few hundred milliseconds: officers opening the home
page again and again, or several at once, share one drawing instead of each paying for it. The page
says when its figures were read.
"""

from __future__ import annotations

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


@dataclass(frozen=True)
class DrawnOverview:
    read_at: datetime
    charts: list[Chart]


class OverviewCache:
    def __init__(self, engine: sa.Engine, max_age_s: float = MAX_AGE_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.engine = engine
        self.max_age_s = max_age_s
        self.clock = clock
        self._lock = threading.Lock()  # callers arriving while it is drawn wait for that drawing
        self._drawn: tuple[float, DrawnOverview] | None = None

    def get(self, now: datetime) -> DrawnOverview:
        """The charts, drawn at `now` unless a drawing younger than `max_age_s` exists."""
        from pipeline.desk.charts import overview_charts  # matplotlib: ~70 MB, paid when first drawn

        with self._lock:
            if self._drawn is None or self.clock() - self._drawn[0] >= self.max_age_s:
                self._drawn = (self.clock(), DrawnOverview(now, overview_charts(overview(self.engine, now))))
            return self._drawn[1]
