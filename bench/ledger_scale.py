"""The ledger at a million requests: the desk's pages, `erasure status`, `erasure ledger verify`.

    python bench/ledger_scale.py --url postgresql+psycopg://postgres@127.0.0.1:5432/ledger_scale

Seeds the ledger (`bench/seed_ledger.py`) unless it holds `--requests` already, then serves the
real desk (FastAPI under uvicorn, on a loopback port) and measures over HTTP, logged in as an
officer, the p50 and p95 of the request list, each filter, a page deep in the list and request
pages; `erasure status ID` (the command, and its ledger reads alone); a full verification's rate
and an incremental one after new events. On PostgreSQL, `--explain FILE` writes the
EXPLAIN (ANALYZE, BUFFERS) of the list's queries, and `--before` measures the list's queries as
they were before migration 0007 (its indexes dropped inside a transaction rolled back after).

First (alone with `--figures-only`): `Ledger.figures()`, `/metrics` over HTTP, the overview's
queries uncached and the home page, `erasure status --lanes`, and the CSV export's rows and peak RSS
growth (downloaded from a desk in a process of its own). With `BENCH_CODE_ROOT=<another checkout>`
the bench runs that checkout's code on the same ledger (the figures before a change).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import resource
import secrets
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from nacl.signing import SigningKey

# BENCH_CODE_ROOT: measure another checkout's code (e.g. the one before a change) on the same ledger.
ROOT = Path(os.environ.get("BENCH_CODE_ROOT") or Path(__file__).resolve().parent.parent)
sys.path.insert(0, str(ROOT))  # run from a checkout as well as from an installed package

from bench.seed_ledger import ensure_database, seed  # noqa: E402
from pipeline.desk.app import DeskSecurity, Publisher, create_app  # noqa: E402
from pipeline.devstack.serving import serve  # noqa: E402
from pipeline.ledger import Ledger, requests_table  # noqa: E402
from pipeline.ledger.accounts import Access  # noqa: E402
from pipeline.ledger.checkpoints import verify_ledger  # noqa: E402
from pipeline.ledger.listing import COUNT_CAP, PageCursor, RequestFilter, page_query, where  # noqa: E402
from pipeline.signing import Signer  # noqa: E402
from pipeline.streaming import topics  # noqa: E402
from schemas import ErasureOutcome, ErasurePlanned, PlannedTarget, SealedIdentities  # noqa: E402

OFFICER = "bench-officer"


def log_in(client: httpx.Client, password: str) -> None:
    token = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text)
    assert token, "the login form carries a CSRF token"
    form = {"username": OFFICER, "password": password, "csrf": token.group(1)}
    assert client.post("/login", data=form).status_code == 303, "the bench officer logs in"


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    ordered = sorted(samples_ms)
    p95 = ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]
    return {"p50_ms": round(statistics.median(ordered), 1), "p95_ms": round(p95, 1),
            "max_ms": round(ordered[-1], 1), "n": len(ordered)}


def timed(call: Callable[[], Any], samples: int, warmup: int = 2) -> dict[str, float]:
    for _ in range(warmup):
        call()
    times = []
    for _ in range(samples):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return percentiles(times)


def requests_held(url: str) -> int:
    ensure_database(url)
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("erasure_requests"):
                return 0
            return int(conn.execute(sa.select(sa.func.count()).select_from(requests_table)).scalar_one())
    finally:
        engine.dispose()


def sample_requests(ledger: Ledger, how_many: int) -> list[tuple[str, str]]:
    """(request id, subject ref) of requests spread over the whole ledger."""
    with ledger.engine.connect() as conn:
        rows = conn.execute(sa.select(requests_table.c.request_id, requests_table.c.subject_ref)
                            .order_by(sa.func.random()).limit(how_many)).all()
    return [(r.request_id, r.subject_ref) for r in rows]


def deep_cursor(ledger: Ledger, offset: int) -> str:
    """The token of a page `offset` requests down the list (found once, the slow way)."""
    with ledger.engine.connect() as conn:
        row = conn.execute(sa.select(requests_table.c.received_at, requests_table.c.request_id)
                           .order_by(requests_table.c.received_at.desc(), requests_table.c.request_id.desc())
                           .offset(offset).limit(1)).one()
    return PageCursor(row.received_at, row.request_id).token()


def desk_pages(ledger: Ledger, samples: int) -> dict[str, dict[str, float]]:
    """p50/p95 of each page, over real HTTP, logged in as an officer."""
    password = secrets.token_urlsafe(16)
    Access(ledger).set_user(OFFICER, "officer", password, datetime.now(UTC))
    publisher = Publisher(lambda *_: None, Signer("desk", SigningKey.generate()))  # reading publishes nothing
    app = create_app(ledger, Access(ledger), publisher, None, secrets.token_urlsafe(32), topics.task_topic,
                     topics.REQUESTS, security=DeskSecurity(cookie_secure=False))
    picked = sample_requests(ledger, samples + 2)
    request_id, subject_ref = picked[0]
    with ledger.engine.connect() as conn:
        half = int(conn.execute(sa.select(sa.func.count()).select_from(requests_table)).scalar_one()) // 2
    pages = {
        "list": "/", f"list, a page {half:,} requests down": f"/?after={deep_cursor(ledger, half)}",
        "status in_progress": "/?status=in_progress", "status needs_attention": "/?status=needs_attention",
        "status completed_with_holds": "/?status=completed_with_holds",
        "overdue": "/?deadline=overdue", "due soon": "/?deadline=due_soon",
        "channel retention": "/?channel=retention", "channel postal": "/?channel=postal",
        "system stripe": "/?system=stripe", "system paper-vendor (6 %)": "/?system=paper-vendor",
        "system ga4, in progress": "/?system=ga4&status=in_progress",
        "search: request id": f"/?q={request_id}", "search: 8-character prefix": f"/?q={request_id[:8]}",
        "search: subject ref": f"/?q={subject_ref}",
    }
    results: dict[str, dict[str, float]] = {}
    with serve(app) as base, httpx.Client(base_url=base, timeout=120) as officer:
        log_in(officer, password)

        def get(path: str) -> None:
            response = officer.get(path)
            assert response.status_code == 200, f"{path}: {response.status_code}"

        for name, path in pages.items():
            results[name] = timed(lambda path=path: get(path), samples)
        ids = iter([rid for rid, _ in picked] * 3)
        results["request page (a different request each time)"] = timed(
            lambda: get(f"/requests/{next(ids)}"), samples)
    return results


# -- what /metrics, `erasure status --lanes`, the overview and the export cost ---------------------
def figures_times(url: str, ledger: Ledger, samples: int) -> dict[str, Any]:
    """`Ledger.figures` (behind /metrics and `status --lanes`), /metrics over HTTP, the overview's
    queries and the home page (over HTTP), `erasure status --lanes` (the command), and the CSV
    export's peak RSS (in a process of its own)."""
    from pipeline.ledger.overview import overview

    times: dict[str, Any] = {
        "figures()": timed(lambda: ledger.figures(datetime.now(UTC)), samples, warmup=1),
        "overview() (its queries, uncached)": timed(lambda: overview(ledger.engine, datetime.now(UTC)),
                                                    3, warmup=0)}
    password = secrets.token_urlsafe(16)
    Access(ledger).set_user(OFFICER, "officer", password, datetime.now(UTC))
    publisher = Publisher(lambda *_: None, Signer("desk", SigningKey.generate()))
    app = create_app(ledger, Access(ledger), publisher, None, secrets.token_urlsafe(32), topics.task_topic,
                     topics.REQUESTS, security=DeskSecurity(cookie_secure=False))
    with serve(app) as base, httpx.Client(base_url=base, timeout=600) as officer:
        times["/metrics"] = timed(lambda: officer.get("/metrics").raise_for_status(), samples, warmup=1)
        log_in(officer, password)
        started = time.perf_counter()
        first = officer.get("/").raise_for_status()
        times["home page, first_ms"] = round((time.perf_counter() - started) * 1000)
        # The first load starts the drawing and shows a placeholder; the charts follow.
        while first.text.find('id="overview-pending"') >= 0 and time.perf_counter() - started < 600:
            time.sleep(0.25)
            first = officer.get("/").raise_for_status()
        times["home page, until the charts are drawn_ms"] = round((time.perf_counter() - started) * 1000)
        times["home page, after"] = timed(lambda: officer.get("/").raise_for_status(), samples, warmup=0)
    env = {**os.environ, "DATABASE_URL": url, "ERASURE_HOME_DIR": str(Path(os.environ.get(
        "TMPDIR", "/tmp")) / "ledger-scale-bench"), "PYTHONPATH": str(ROOT)}

    def lanes_command() -> None:
        done = subprocess.run([sys.executable, "-m", "pipeline.cli", "status", "--lanes"], env=env, cwd=ROOT,
                              capture_output=True, text=True, timeout=600, check=False)
        assert done.returncode == 0, done.stderr[-500:]

    times["`erasure status --lanes`, the whole command"] = timed(lanes_command, 3, warmup=1)
    exported = subprocess.run([sys.executable, __file__, "--url", url, "--export-rss"], env=env, cwd=ROOT,
                              capture_output=True, text=True, timeout=1800, check=True)
    times["export.csv"] = json.loads(exported.stdout.strip().splitlines()[-1])
    return times


def export_rss(url: str) -> dict[str, Any]:
    """Download /export.csv from a desk in this process; the process's peak RSS before and after."""
    ledger = Ledger(url)
    try:
        password = secrets.token_urlsafe(16)
        Access(ledger).set_user(OFFICER, "officer", password, datetime.now(UTC))
        publisher = Publisher(lambda *_: None, Signer("desk", SigningKey.generate()))
        app = create_app(ledger, Access(ledger), publisher, None, secrets.token_urlsafe(32),
                         topics.task_topic, topics.REQUESTS, security=DeskSecurity(cookie_secure=False))
        with serve(app) as base, httpx.Client(base_url=base, timeout=1800) as officer:
            log_in(officer, password)
            officer.get("/metrics")  # everything imported and warm before the baseline
            before_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            started, size, lines = time.perf_counter(), 0, 0
            with officer.stream("GET", "/export.csv") as response:
                response.raise_for_status()
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    lines += chunk.count(b"\n")
            after_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    finally:
        ledger.close()
    return {"rows": lines - 1, "mb": round(size / 1e6, 1), "seconds": round(time.perf_counter() - started, 1),
            "peak_rss_mb_before": round(before_kb / 1024), "peak_rss_mb_after": round(after_kb / 1024),
            "peak_rss_growth_mb": round((after_kb - before_kb) / 1024)}


def status_times(url: str, ledger: Ledger, samples: int, home: Path) -> dict[str, dict[str, float]]:
    """`erasure status ID`: the whole command (a new Python each time), and its ledger reads alone."""
    ids = iter([rid for rid, _ in sample_requests(ledger, samples + 4)])

    def ledger_reads() -> None:
        rid = next(ids)
        assert ledger.request(rid, datetime.now(UTC)) is not None
        ledger.views.notes(rid)
        ledger.events(rid)

    env = {**os.environ, "DATABASE_URL": url, "ERASURE_HOME_DIR": str(home)}
    rids = iter([rid for rid, _ in sample_requests(ledger, 8)])

    def command() -> None:
        done = subprocess.run([sys.executable, "-m", "pipeline.cli", "status", next(rids)], env=env,
                              capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr[-500:]

    imports = timed(lambda: subprocess.run([sys.executable, "-c", "import pipeline.cli"], check=True),
                    3, warmup=1)
    return {"ledger reads of `erasure status ID`": timed(ledger_reads, samples),
            "`erasure status ID`, the whole command": timed(command, 5, warmup=1),
            "python -c 'import pipeline.cli' alone": imports}


def record_new_events(ledger: Ledger, requests: int) -> int:
    """Requests recorded the pipeline's way (plan, two outcomes, completion); how many events."""
    before = ledger.chain_head()[0]
    now = datetime.now(UTC)
    for index in range(requests):
        rid, at = str(uuid.uuid4()), now + timedelta(microseconds=index)
        sealed = SealedIdentities(alg="secretbox-xsalsa20poly1305", key_id=rid, ciphertext="c2VjcmV0")
        ledger.record([ErasurePlanned(request_id=rid, received_at=at, due_at=at + timedelta(days=30),
                                      subject_ref=f"sr_{uuid.uuid4().hex}", identities=sealed, planned_at=at,
                                      channel="http_api",
                                      targets=[PlannedTarget(system=s, expected_turnaround_s=60)
                                               for s in ("brevo", "site-db")]),
                       ErasureOutcome(request_id=rid, system="brevo", attempt=1, status="erased",
                                      occurred_at=at),
                       ErasureOutcome(request_id=rid, system="site-db", attempt=1, status="not_found",
                                      occurred_at=at)], at)
    return ledger.chain_head()[0] - before


def verification(ledger: Ledger, full: bool) -> dict[str, Any]:
    result = verify_ledger(ledger.engine, ledger.writer, datetime.now(UTC), full=full)
    assert result.intact, result.problem or f"broken at {result.broken_at}"
    return {"mode": result.mode, "events": result.checked, "seconds": round(result.elapsed_s, 2),
            "events_per_s": round(result.events_per_s)}


# -- PostgreSQL: the plans, and the list as it was before migration 0007 ---------------------------
LIST_QUERIES = {"list": RequestFilter(), "status needs_attention": RequestFilter(status="needs_attention"),
                "overdue": RequestFilter(overdue=True), "due soon": RequestFilter(due_soon=True),
                "channel retention": RequestFilter(channel="retention"),
                "system paper-vendor": RequestFilter(system="paper-vendor"),
                "search: 8-character prefix": RequestFilter(search="5a1d7c9e")}
NEW_INDEXES = ("ix_erasure_requests_newest", "ix_erasure_requests_status_newest",
               "ix_erasure_requests_channel_newest", "ix_erasure_requests_status_due",
               "ix_erasure_system_outcomes_system_status")


def explain(conn: sa.Connection, query: sa.Select[Any]) -> tuple[str, float]:
    sql = str(query.compile(conn, compile_kwargs={"literal_binds": True}))
    lines = [r[0] for r in conn.execute(sa.text(f"EXPLAIN (ANALYZE, BUFFERS) {sql}"))]
    total = next(float(line.split(":")[1].split()[0]) for line in lines if line.startswith("Execution Time"))
    return "\n".join(lines), total


def plans(ledger: Ledger, path: Path | None) -> dict[str, float]:
    """Each list query's page and its count, EXPLAIN ANALYZEd: the database's own milliseconds."""
    now, out, times = datetime.now(UTC), [], {}
    with ledger.engine.connect() as conn:
        for name, f in LIST_QUERIES.items():
            page_plan, page_ms = explain(conn, page_query(f, now, None, 50))
            matching = sa.select(requests_table.c.request_id)
            count_sql = sa.select(sa.func.count()).select_from(
                where(matching, f, now).limit(COUNT_CAP + 1).subquery())
            count_plan, count_ms = explain(conn, count_sql)
            times[name] = round(page_ms + count_ms, 1)
            out.append(f"== {name}: page {page_ms:.1f} ms, count {count_ms:.1f} ms\n"
                       f"{page_plan}\n{count_plan}\n")
    if path is not None:
        path.write_text("\n".join(out))
    return times


def old_list_query(f: RequestFilter, now: datetime) -> sa.Select[Any]:
    """The list's query before this change: newest first, 200 rows, a LIKE for the search."""
    r = requests_table.c
    query = sa.select(requests_table).order_by(r.received_at.desc())
    if f.status:
        query = query.where(r.status == f.status)
    if f.overdue:
        query = query.where(r.status == "in_progress", r.due_at < now)
    if f.due_soon:
        query = query.where(r.status == "in_progress", r.due_at >= now, r.due_at <= now + timedelta(days=7))
    if f.search:
        query = query.where(sa.or_(r.request_id.startswith(f.search), r.subject_ref == f.search))
    return query.limit(200)


def before(ledger: Ledger) -> dict[str, float]:
    """The old queries on the schema before 0007 (its indexes dropped in a transaction rolled back)."""
    now, times = datetime.now(UTC), {}
    with ledger.engine.connect() as conn, conn.begin() as transaction:
        for name in NEW_INDEXES:
            conn.execute(sa.text(f"DROP INDEX {name}"))
        conn.execute(sa.text("CREATE INDEX ix_erasure_requests_status ON erasure_requests (status)"))
        for name, f in LIST_QUERIES.items():
            if f.channel is None and f.system is None:  # the old list had neither filter
                times[name] = round(explain(conn, old_list_query(f, now))[1], 1)
        transaction.rollback()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="the ledger (seeded first unless it holds --requests)")
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=30, help="timed calls per page (after 2 warm-ups)")
    parser.add_argument("--skip-full-verify", action="store_true", help="the full verification takes minutes")
    parser.add_argument("--explain", type=Path,
                        help="write the list queries' EXPLAIN ANALYZE here (PostgreSQL)")
    parser.add_argument("--before", action="store_true",
                        help="time the list's queries as they were before migration 0007 (PostgreSQL)")
    parser.add_argument("--json", type=Path, help="write the figures here as well")
    parser.add_argument("--figures-only", action="store_true",
                        help="only figures(), /metrics, `status --lanes`, the overview and the export")
    parser.add_argument("--export-rss", action="store_true", help=argparse.SUPPRESS)  # figures_times' child
    args = parser.parse_args()
    if args.export_rss:
        print(json.dumps(export_rss(args.url)))
        return
    figures: dict[str, Any] = {"when": datetime.now(UTC).isoformat(timespec="seconds"),
                               "load_average": os.getloadavg(), "cpus": os.cpu_count()}
    held = requests_held(args.url)
    if held < args.requests:
        figures["seed"] = seed(args.url, args.requests, 7, datetime.now(UTC), min(2, os.cpu_count() or 1),
                               replace=held > 0)
    else:
        figures["seed"] = f"reused: {held} requests already there"
    ledger = Ledger(args.url)
    try:
        figures["figures, /metrics, overview, export"] = figures_times(args.url, ledger, args.samples)
        if args.figures_only:
            return print(json.dumps(figures, indent=2, default=str))
        figures["pages"] = desk_pages(ledger, args.samples)
        home = Path(os.environ.get("TMPDIR", "/tmp")) / "ledger-scale-bench"
        figures["status"] = status_times(args.url, ledger, args.samples, home)
        if ledger.engine.dialect.name == "postgresql":
            figures["database_ms"] = plans(ledger, args.explain)
            if args.before:
                figures["database_ms_before_0007"] = before(ledger)
        if not args.skip_full_verify:
            figures["verify_full"] = verification(ledger, full=True)
        figures["verify_incremental_nothing_new"] = verification(ledger, full=False)
        figures["new_events"] = record_new_events(ledger, 250)
        figures["verify_incremental"] = verification(ledger, full=False)
    finally:
        ledger.close()
    text = json.dumps(figures, indent=2, default=str)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
