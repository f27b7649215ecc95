"""What an operator watches: `/metrics` (Prometheus text), `/healthz`, `/readyz`. No login, and no
personal data: labels are request states, system ids and outcome statuses, never a request id or a
subject_ref.

The figures are computed from the ledger at scrape time (`LedgerCollector`, aggregate queries), so
every desk process reports the same numbers and they match the ledger. Dead letters are not in the
ledger (they are published to the dead-letter topic, see `pipeline.streaming.publishing`): watch that
topic's size with the broker's own exporter.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError

from pipeline.codec import now_utc
from pipeline.ledger import Ledger
from pipeline.ledger.views import PipelineFigures

log = logging.getLogger(__name__)
router = APIRouter(include_in_schema=False)
# What a database that is gone, locked or unreachable raises (through SQLAlchemy, or the driver's I/O).
LEDGER_DOWN = (SQLAlchemyError, OSError)


def families(figures: PipelineFigures, now_ts: float) -> Iterator[GaugeMetricFamily]:
    """The Prometheus families of the ledger's figures (`now_ts`: the moment they were read)."""
    requests = GaugeMetricFamily("erasure_requests", "Requests in the ledger, by state", labels=["state"])
    for state, count in sorted(figures.requests_by_state.items()):
        requests.add_metric([state], count)
    yield requests
    outcomes = GaugeMetricFamily("erasure_system_outcomes",
                                 "Systems' rows by system and current status (retrying, pending, manual, "
                                 "failed, erased, ...)", labels=["system", "status"])
    open_rows = GaugeMetricFamily("erasure_lane_open", "Systems' rows not final yet (planned, pending, "
                                  "retrying, manual), by system", labels=["system"])
    late_rows = GaugeMetricFamily("erasure_lane_overdue", "Rows not final past the time their system was "
                                  "expected to answer by, by system", labels=["system"])
    for lane in figures.lanes:
        for status, count in sorted(lane.by_status.items()):
            outcomes.add_metric([lane.system, status], count)
        open_rows.add_metric([lane.system], lane.open)
        late_rows.add_metric([lane.system], lane.overdue)
    yield from (outcomes, open_rows, late_rows)
    oldest = GaugeMetricFamily("erasure_oldest_unfinished_request_age_seconds",
                               "Age of the oldest request in progress (no sample when none is)")
    margin = GaugeMetricFamily("erasure_deadline_margin_seconds", "Seconds until the nearest deadline of a "
                               "request in progress; negative when overdue (no sample when none is)")
    if figures.oldest_unfinished_received_at is not None:
        oldest.add_metric([], now_ts - figures.oldest_unfinished_received_at.timestamp())
    if figures.nearest_due_at is not None:
        margin.add_metric([], figures.nearest_due_at.timestamp() - now_ts)
    yield from (oldest, margin)
    yield GaugeMetricFamily("erasure_overdue_requests", "Requests in progress past their deadline",
                            value=figures.overdue_requests)
    yield GaugeMetricFamily("erasure_ledger_chain_length", "Events in the ledger's hash chain",
                            value=figures.chain_length)


class LedgerCollector(Collector):
    """Reads the ledger at each scrape; `erasure_ledger_up` is 0 (and nothing else reported) when the
    ledger does not answer."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = now_utc()
        try:
            figures = self.ledger.figures(now)
        except LEDGER_DOWN as exc:  # a scrape reports the outage, it does not fail
            log.warning("metrics: the ledger did not answer (%s)", type(exc).__name__)
            yield GaugeMetricFamily("erasure_ledger_up", "1 when the ledger answered this scrape", value=0)
            return
        yield GaugeMetricFamily("erasure_ledger_up", "1 when the ledger answered this scrape", value=1)
        yield from families(figures, now.timestamp())


def metrics_registry(ledger: Ledger) -> CollectorRegistry:
    """A registry of its own per app (several desks in one process never collide)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LedgerCollector(ledger))
    return registry


@router.get("/metrics")
def metrics(request: Request) -> Response:
    registry: CollectorRegistry = request.app.state.metrics
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process answers (its event loop runs)."""
    return {"status": "ok"}


@router.get("/readyz")
def readyz(request: Request) -> Response:
    """Ready when the ledger answers a `SELECT 1`; 503 otherwise (the cause is logged, not shown)."""
    ledger: Ledger = request.app.state.desk.ledger
    try:
        ledger.ping()
    except LEDGER_DOWN as exc:
        log.warning("readyz: the ledger did not answer (%s)", type(exc).__name__)
        return JSONResponse({"status": "ledger unavailable"}, status_code=503)
    return JSONResponse({"status": "ready"})
