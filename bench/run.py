"""Cost, throughput and latency of the whole pipeline, beside the raw broker ceiling, in one run.

    python bench/run.py --requests 10000 [--systems 4|8] [--site-db sqlite|postgres]
                        [--paced-requests 3000 --paced-rate 100]

Starts the embedded broker (or uses KAFKA_BOOTSTRAP_SERVERS), the faust worker and the
connector processes over the demo's four systems (SQLite or PostgreSQL site database,
fake Brevo answering instantly, Redis session cache, uploads on disk), or eight (four
more fake processors), with the embedded SQLite ledger. First a burst: N requests
published as fast as the intake client can; then, optionally, requests paced at a
steady rate. Reported: CPU milliseconds per completed request summed over the
pipeline's processes (worker and connector workers, from the kernel's accounting;
broker, publisher and fakes excluded), completed requests/s, the share of the broker's
produce-and-consume ceiling measured in the same run (counting the messages a request
really takes: request, plan, a task and an outcome per system, completion),
p50/p95/p99 latency per phase, and peak RSS per process.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout as well as from an installed package
sys.path.insert(0, str(ROOT / "bench"))

from procstats import CpuMeter, peak_rss_mb  # noqa: E402

from pipeline.devstack.broker import find_or_start  # noqa: E402
from pipeline.devstack.demo import (  # noqa: E402
    DEMO_BREVO_KEY_ENV,
    Person,
    demo_systems,
    seed_brevo,
    seed_redis,
    seed_uploads,
)
from pipeline.devstack.fake_brevo import FakeBrevo  # noqa: E402
from pipeline.devstack.local import BREVO_KEY, LocalPipeline  # noqa: E402
from pipeline.kafka_clients import group_consumer, producer  # noqa: E402
from pipeline.ledger import requests_table, utc  # noqa: E402

PG_ADMIN = os.environ.get("TEST_POSTGRES_ADMIN", "host=127.0.0.1 port=5432 user=postgres dbname=test")
BENCH_REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
PEOPLE = 200


def messages_per_request(systems: int) -> int:
    """Request, plan, one task and one outcome per system, completion."""
    return 3 + 2 * systems


def broker_ceiling(bootstrap: str, count: int, size: int) -> dict[str, float]:
    """The project's Kafka clients producing, then consuming, `count` messages of `size` bytes."""
    topic = f"bench.ceiling.{uuid.uuid4().hex[:8]}"
    payload = os.urandom(size // 2).hex().encode()[:size]
    sender = producer(bootstrap, "bench-ceiling", linger_ms=5)
    start = time.perf_counter()
    for index in range(count):
        sender.send(topic, key=str(index).encode(), value=payload)
    sender.flush()
    produced = time.perf_counter()
    consumer = group_consumer(bootstrap, f"g-{topic}", "bench-ceiling", session_timeout_s=6.0,
                              heartbeat_s=1.0)
    consumer.subscribe([topic])
    seen = 0
    first_poll = time.perf_counter()
    while seen < count:
        for records in consumer.poll(timeout_ms=500).values():
            if seen == 0:
                first_poll = time.perf_counter()
            seen += len(records)
    consumed = time.perf_counter()
    consumer.close()
    sender.close()
    produce_s = produced - start
    consume_s = consumed - first_poll  # group join excluded: it is a Tansu session-timeout artefact
    return {"produce_msgs_per_s": count / produce_s, "consume_msgs_per_s": count / consume_s,
            "round_trip_msgs_per_s": count / (produce_s + consume_s)}


def publish(pipeline: LocalPipeline, requests: int, rate: float) -> tuple[dict[str, float], float, float]:
    """Publish `requests` requests (at `rate` per second, or as a burst when 0).

    Returns when each was published, the start time, and how long publishing took."""
    published: dict[str, float] = {}
    start = time.time()
    for index in range(requests):
        if rate > 0:
            time.sleep(max(0.0, start + index / rate - time.time()))
        event = pipeline.intake.build({"email": f"bench.{index % PEOPLE}@example.test"}, datetime.now(UTC))
        published[event.request_id] = time.time()
        pipeline.intake.send(event)  # signed, without waiting for each acknowledgement
    pipeline.intake.producer.flush()
    return published, start, time.time() - start


def wait_completed(ledger_url: str, request_ids: set[str], timeout_s: float) -> dict[str, float]:
    """When each of these requests completed (epoch seconds), polling the ledger until all or timeout."""
    engine = sa.create_engine(ledger_url)
    done: dict[str, float] = {}
    deadline = time.time() + timeout_s
    while len(done) < len(request_ids) and time.time() < deadline:
        time.sleep(0.5)
        with engine.connect() as conn:
            rows = conn.execute(sa.select(requests_table.c.request_id, requests_table.c.completed_at)
                                .where(requests_table.c.completed_at.is_not(None))).all()
        done = {r.request_id: utc(r.completed_at).timestamp()  # type: ignore[union-attr]
                for r in rows if r.request_id in request_ids}
        print(f"  {len(done)}/{len(request_ids)} completed", file=sys.stderr)
    engine.dispose()
    return done


def latency_s(published: dict[str, float], done: dict[str, float]) -> dict[str, float]:
    latencies = sorted(done[r] - published[r] for r in done if r in published)
    quantiles = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [float("nan")] * 99
    return {"p50": round(quantiles[49], 3), "p95": round(quantiles[94], 3), "p99": round(quantiles[98], 3)}


def run_phase(pipeline: LocalPipeline, ledger_url: str, pids: dict[str, int], requests: int, rate: float,
              timeout_s: float) -> dict[str, Any]:
    """Publish, wait for every completion; what it cost the pipeline's processes and how long it took."""
    meter = CpuMeter(pids)
    meter.start()
    published, start, publish_s = publish(pipeline, requests, rate)
    done = wait_completed(ledger_url, set(published), timeout_s)
    used_s = meter.stop()
    elapsed_s = max(done.values()) - start if done else float("nan")
    cpu_total_s = sum(used_s.values())
    return {
        "requests": requests, "completed": len(done), "publish_rate_per_s": rate or "burst",
        "publish_s": round(publish_s, 2), "elapsed_s": round(elapsed_s, 2),
        "completed_requests_per_s": round(len(done) / elapsed_s, 1),
        "cpu_ms_per_completed_request": round(1000 * cpu_total_s / max(1, len(done)), 2),
        "cpu_s_by_process": {name: round(value, 2) for name, value in used_s.items()},
        "latency_s": latency_s(published, done),
    }


def site_database(kind: str, work: Path) -> tuple[str, str | None]:
    """The site database's URL, and the PostgreSQL database to drop afterwards."""
    if kind == "sqlite":
        return f"sqlite:///{work / 'site.db'}", None
    import psycopg

    name = f"bench_site_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}", name


def drop_database(name: str | None) -> None:
    if name is None:
        return
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def extra_systems(work: Path, people: list[Person], count: int,
                  fakes: list[FakeBrevo]) -> list[dict[str, Any]]:
    """The demo's Redis cache and uploads, plus `count` more fake processors (Brevo-like, each its own)."""
    import redis

    redis.Redis.from_url(BENCH_REDIS_URL).flushdb()
    seed_redis(BENCH_REDIS_URL, people)
    uploads = work / "uploads"
    seed_uploads(uploads, people)
    systems = demo_systems("sqlite://", "http://unused", BENCH_REDIS_URL, uploads)["systems"][2:]  # type: ignore[index]
    for index in range(count):
        fake = FakeBrevo({BREVO_KEY}, limit_per_window=10**9)
        fake.start()
        seed_brevo(fake.url, BREVO_KEY, people)
        fakes.append(fake)
        systems.append({"id": f"processor-{index + 1}", "kind": "processor", "location": "EU (bench fake)",
                        "data_categories": ["email_marketing"], "expected_turnaround_s": 60,
                        "connector": {"type": "brevo", "base_url": fake.url,
                                      "api_key_env": DEMO_BREVO_KEY_ENV},
                        "rate_limit": {"requests": 10**6, "per_s": 1.0}})
    return list(systems)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=10_000, help="the burst")
    parser.add_argument("--paced-requests", type=int, default=0, help="then this many, paced")
    parser.add_argument("--paced-rate", type=float, default=100.0, help="requests/s of the paced phase")
    parser.add_argument("--systems", type=int, choices=(4, 8), default=4)
    parser.add_argument("--site-db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--timeout-s", type=float, default=900)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="erasure-bench-"))
    broker = find_or_start(os.environ.get("KAFKA_BOOTSTRAP_SERVERS"), work / "broker")
    ledger_url = f"sqlite:///{work / 'ledger.db'}"
    people = [Person(f"Bench Person {i}", f"bench.{i}@example.test", f"+3360000{i:04d}",
                     in_brevo=i % 2 == 0) for i in range(PEOPLE)]
    site_url, site_db_name = site_database(args.site_db, work)
    fakes: list[FakeBrevo] = []
    pipeline = LocalPipeline(work, broker.bootstrap, ledger_url, people, site_url=site_url,
                             extra_systems=extra_systems(work, people, args.systems - 4, fakes))
    pipeline.brevo.bucket.limit = 10**9
    try:
        pipeline.start()
        pids = pipeline.supervisor.pids()  # the pipeline's own processes: broker and bench excluded
        result: dict[str, Any] = {"systems": len(pipeline.system_ids), "site_db": args.site_db,
                                  "broker": broker.kind, "ledger": "sqlite"}
        result["burst"] = run_phase(pipeline, ledger_url, pids, args.requests, 0.0, args.timeout_s)
        if args.paced_requests:
            result["paced"] = run_phase(pipeline, ledger_url, pids, args.paced_requests, args.paced_rate,
                                        args.timeout_s)
        result["peak_rss_mb"] = {name: round(peak_rss_mb(pid), 1) for name, pid in pids.items()}
        if broker.pid is not None:
            result["peak_rss_mb"]["broker"] = round(peak_rss_mb(broker.pid), 1)
        sample = pipeline.intake.build({"email": "bench.0@example.test"}, datetime.now(UTC))
        message_size = len(sample.model_dump_json(exclude_none=True))
        ceiling = broker_ceiling(broker.bootstrap, args.requests, message_size)
        per_request = messages_per_request(len(pipeline.system_ids))
        result["broker_ceiling"] = {k: round(v, 1) for k, v in ceiling.items()}
        result["messages_per_request"] = per_request
        result["pipeline_share_of_ceiling"] = round(
            result["burst"]["completed_requests_per_s"] * per_request / ceiling["round_trip_msgs_per_s"], 3)
        print(json.dumps(result, indent=2))
        out = ROOT / "bench" / "results"
        out.mkdir(exist_ok=True)
        (out / f"run-{datetime.now(UTC):%Y%m%dT%H%M%S}.json").write_text(json.dumps(result, indent=2))
    finally:
        pipeline.stop()
        for fake in fakes:
            fake.stop()
        broker.stop()
        drop_database(site_db_name)


if __name__ == "__main__":
    main()
