"""What an operator watches: `/metrics` (Prometheus text), `/healthz`, `/readyz`. No login, and no
personal data: labels are request states, system ids and outcome statuses, never a request id or a
subject_ref.

The figures are computed from the ledger at scrape time (`LedgerCollector`, aggregate queries), so
every desk process reports the same numbers and they match the ledger; with a broker configured,
`BrokerCollector` adds each lane's consumer lag and the dead letters by reason, read from the broker
(`broker_figures`). Both read shared state, never a process's memory: that is what makes the figures
honest however many workers, connectors and desks run (the worker and connector processes serve no
metrics of their own).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError

from pipeline.codec import now_utc
from pipeline.desk.broker_figures import BrokerProbe
from pipeline.ledger import Ledger
from pipeline.ledger.views import PipelineFigures

log = logging.getLogger(__name__)
router = APIRouter(include_in_schema=False)
# What a database that is gone, locked or unreachable raises (through SQLAlchemy, or the driver's I/O).
LEDGER_DOWN = (SQLAlchemyError, OSError)
RETRIES_HELP = ("Attempts started again, by system and reason: processor (it answered retrying), silent "
                "(re-driven: no answer past its turnaround), officer (an officer's retry)")
OUTBOX_HELP = "Requests the HTTP intake acknowledged whose plan the ledger has not shown yet"
REPUBLISHED_HELP = "Of those, requests published more than once (the broker lost them, or the router is late)"
LAG_HELP = ("Records on a lane's topic its consumer group has not committed past (router, aggregator, or a "
            "system's connectors)")
DEAD_LETTERS_HELP = "Records dead-lettered, by consumer and kind of reason, since the dead-letter topic began"


Family = GaugeMetricFamily | CounterMetricFamily


def families(figures: PipelineFigures, now_ts: float) -> Iterator[Family]:
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
    yield from retry_and_outbox_families(figures, now_ts)


def retry_and_outbox_families(figures: PipelineFigures, now_ts: float) -> Iterator[Family]:
    retries = CounterMetricFamily("erasure_retries", RETRIES_HELP, labels=["system", "reason"])
    for (system, reason), count in sorted(figures.retries.items()):
        retries.add_metric([system, reason], count)
    yield retries
    outbox = figures.outbox
    yield GaugeMetricFamily("erasure_intake_outbox_pending", OUTBOX_HELP, value=outbox.pending)
    yield GaugeMetricFamily("erasure_intake_outbox_republished", REPUBLISHED_HELP, value=outbox.republished)
    oldest = GaugeMetricFamily("erasure_intake_outbox_oldest_age_seconds",
                               "Age of the oldest of those (no sample when there is none)")
    if outbox.oldest_created_at is not None:
        oldest.add_metric([], now_ts - outbox.oldest_created_at.timestamp())
    yield oldest


class LedgerCollector(Collector):
    """Reads the ledger at each scrape; `erasure_ledger_up` is 0 (and nothing else reported) when the
    ledger does not answer."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def collect(self) -> Iterator[Family]:
        now = now_utc()
        try:
            figures = self.ledger.figures(now)
        except LEDGER_DOWN as exc:  # a scrape reports the outage, it does not fail
            log.warning("metrics: the ledger did not answer (%s)", type(exc).__name__)
            yield GaugeMetricFamily("erasure_ledger_up", "1 when the ledger answered this scrape", value=0)
            return
        yield GaugeMetricFamily("erasure_ledger_up", "1 when the ledger answered this scrape", value=1)
        yield from families(figures, now.timestamp())


class BrokerCollector(Collector):
    """The broker's figures (cached a few seconds): `erasure_broker_up`, and while it answers each lane's
    lag and the dead letters by consumer and reason. Nothing when no broker is configured."""

    def __init__(self, probe: BrokerProbe) -> None:
        self.probe = probe

    def collect(self) -> Iterator[Family]:
        figures = self.probe.figures()
        if figures is None:
            return
        yield GaugeMetricFamily("erasure_broker_up", "1 when the broker answered (within a few seconds)",
                                value=int(figures.up))
        if not figures.up:
            return
        lag = GaugeMetricFamily("erasure_consumer_lag", LAG_HELP, labels=["lane"])
        for lane, records in sorted(figures.lag.items()):
            lag.add_metric([lane], records)
        letters = CounterMetricFamily("erasure_dead_letters", DEAD_LETTERS_HELP,
                                      labels=["consumer", "reason"])
        for (consumer, reason), count in sorted(figures.dead_letters.items()):
            letters.add_metric([consumer, reason], count)
        yield from (lag, letters)


def metrics_registry(ledger: Ledger) -> CollectorRegistry:
    """A registry of its own per app (several desks in one process never collide)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LedgerCollector(ledger))
    return registry


def watch_broker(app: FastAPI, probe: BrokerProbe) -> None:
    """Report the broker too: its figures on `/metrics`, its state on `/readyz`."""
    app.state.metrics.register(BrokerCollector(probe))
    app.state.broker_probe = probe


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
    """503 unless the ledger answers a `SELECT 1` (the cause is logged, not shown); the broker's state
    in the body. A broker that does not answer leaves the desk ready: the HTTP intake keeps accepting
    requests (its outbox is in the ledger) and publishes them once the broker is back."""
    ledger: Ledger = request.app.state.desk.ledger
    probe: BrokerProbe | None = getattr(request.app.state, "broker_probe", None)
    figures = probe.figures() if probe is not None else None
    broker = "not configured" if figures is None else "ok" if figures.up else "unreachable"
    try:
        ledger.ping()
    except LEDGER_DOWN as exc:
        log.warning("readyz: the ledger did not answer (%s)", type(exc).__name__)
        return JSONResponse({"status": "ledger unavailable", "ledger": "unreachable", "broker": broker},
                            status_code=503)
    return JSONResponse({"status": "ready", "ledger": "ok", "broker": broker})
