"""Throughput and latency of the whole pipeline, beside the raw broker ceiling, in one run.

    python bench/run.py --requests 10000

Starts the embedded broker (or uses KAFKA_BOOTSTRAP_SERVERS), the faust worker and
one connector process per demo system (fake Brevo answering instantly, SQLite site
database), with the embedded SQLite ledger; publishes N requests as fast as the
intake client can, and waits until the ledger records every one complete.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout as well as from an installed package

from pipeline.devstack.broker import find_or_start  # noqa: E402
from pipeline.devstack.demo import Person  # noqa: E402
from pipeline.devstack.local import LocalPipeline  # noqa: E402
from pipeline.kafka_clients import group_consumer, producer  # noqa: E402
from pipeline.ledger import requests_table, utc  # noqa: E402
from pipeline.streaming import topics  # noqa: E402

# Each request moves 7 messages (request, plan, 2 tasks, 2 outcomes, completion).
MESSAGES_PER_REQUEST = 7


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class RssSampler(threading.Thread):
    def __init__(self, pids: dict[str, int]) -> None:
        super().__init__(daemon=True)
        self.pids = pids
        self.peak: dict[str, float] = dict.fromkeys(pids, 0.0)
        self.stop_event = threading.Event()

    def run(self) -> None:
        while not self.stop_event.wait(0.5):
            for name, pid in self.pids.items():
                self.peak[name] = max(self.peak[name], rss_mb(pid))


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
        event = pipeline.intake.build({"email": f"bench.{index % 400}@example.test"}, datetime.now(UTC))
        published[event.request_id] = time.time()
        pipeline.intake.producer.send(topics.REQUESTS, key=event.request_id.encode(),
                                      value=event.model_dump_json(exclude_none=True).encode())
    pipeline.intake.producer.flush()
    return published, start, time.time() - start


def wait_completed(ledger_url: str, requests: int, timeout_s: float) -> dict[str, float]:
    """When each completed request completed (epoch seconds), polling the ledger until all or timeout."""
    engine = sa.create_engine(ledger_url)
    done: dict[str, float] = {}
    deadline = time.time() + timeout_s
    while len(done) < requests and time.time() < deadline:
        time.sleep(1.0)
        with engine.connect() as conn:
            rows = conn.execute(sa.select(requests_table.c.request_id, requests_table.c.completed_at)
                                .where(requests_table.c.completed_at.is_not(None))).all()
        done = {r.request_id: utc(r.completed_at).timestamp() for r in rows}  # type: ignore[union-attr]
        print(f"  {len(done)}/{requests} completed", file=sys.stderr)
    engine.dispose()
    return done


def report(args: argparse.Namespace, broker_kind: str, ceiling: dict[str, float], message_size: int,
           published: dict[str, float], done: dict[str, float], start: float, publish_s: float,
           peak_rss: dict[str, float]) -> dict[str, Any]:
    latencies = sorted(done[r] - published[r] for r in done if r in published)
    elapsed_s = max(done.values()) - start if done else float("nan")
    pipeline_rps = len(done) / elapsed_s
    quantiles = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [float("nan")] * 99
    return {
        "requests": args.requests, "completed": len(done), "broker": broker_kind,
        "publish_rate_per_s": args.rate or "burst",
        "publish_s": round(publish_s, 2), "elapsed_s": round(elapsed_s, 2),
        "completed_requests_per_s": round(pipeline_rps, 1),
        "latency_s": {"p50": round(quantiles[49], 3), "p95": round(quantiles[94], 3),
                      "p99": round(quantiles[98], 3)},
        "message_size_bytes": message_size,
        "broker_ceiling": {k: round(v, 1) for k, v in ceiling.items()},
        "pipeline_share_of_ceiling": round(
            pipeline_rps * MESSAGES_PER_REQUEST / ceiling["round_trip_msgs_per_s"], 3),
        "peak_rss_mb": {k: round(v, 1) for k, v in peak_rss.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--timeout-s", type=float, default=900)
    parser.add_argument("--rate", type=float, default=0.0,
                        help="Publish at this many requests/s (0: as fast as possible, a burst)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="erasure-bench-"))
    broker = find_or_start(os.environ.get("KAFKA_BOOTSTRAP_SERVERS"), work / "broker")
    ledger_url = f"sqlite:///{work / 'ledger.db'}"
    people = [Person(f"Bench Person {i}", f"bench.{i}@example.test", f"+3360000{i:04d}",
                     in_brevo=i % 2 == 0) for i in range(200)]
    pipeline = LocalPipeline(work, broker.bootstrap, ledger_url, people)
    pipeline.brevo.bucket.limit = 10**9
    try:
        pipeline.start()
        pids = pipeline.supervisor.pids()
        if broker.pid is not None:
            pids["tansu"] = broker.pid
        pids["bench (publisher, fake Brevo)"] = os.getpid()
        sampler = RssSampler(pids)
        sampler.start()
        sample = pipeline.intake.build({"email": "bench.0@example.test"}, datetime.now(UTC))
        message_size = len(sample.model_dump_json(exclude_none=True))
        published, start, publish_s = publish(pipeline, args.requests, args.rate)
        done = wait_completed(ledger_url, args.requests, args.timeout_s)
        sampler.stop_event.set()
        ceiling = broker_ceiling(broker.bootstrap, args.requests, message_size)
        result = report(args, broker.kind, ceiling, message_size, published, done, start, publish_s,
                        sampler.peak)
        print(json.dumps(result, indent=2))
        out = ROOT / "bench" / "results"
        out.mkdir(exist_ok=True)
        (out / f"run-{datetime.now(UTC):%Y%m%dT%H%M%S}.json").write_text(json.dumps(result, indent=2))
    finally:
        pipeline.stop()
        broker.stop()


if __name__ == "__main__":
    main()
