"""How long a record waits for an idle connector lane: the first work after a quiet spell, one hop.

    python bench/lane_wake.py [--rounds 6]

Starts a Tansu broker of its own and one lane's consumer (`kafka_clients.group_consumer`, sole
owner, as `erasure up` runs it) polled through `pipeline.worker.idle.IdleBackoff` on a thread.
Each round waits until the lane is idle (`IDLE_AFTER_S`, plus a random part of a pause), publishes
one record and times until a poll returns it. Prints the median, mean and longest wait. Run it
from two checkouts to compare their idle polling (wall time: say the load average with it).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout as well as from an installed package

from kafka.admin import NewTopic  # noqa: E402

from pipeline import kafka_clients  # noqa: E402
from pipeline.devstack.broker import start_tansu  # noqa: E402
from pipeline.worker.idle import IDLE_AFTER_S, LONG_POLL_MS, IdleBackoff  # noqa: E402

TOPIC = "bench.lane-wake"


def lane(consumer: kafka_clients.LaneConsumer, seen: dict[bytes, float], stop: threading.Event) -> None:
    backoff = IdleBackoff()
    while not stop.is_set():
        for records in backoff.poll(consumer, pending=0).values():
            for record in records:
                seen[record.value] = time.monotonic()


def waits_s(rounds: int, work: Path) -> list[float]:
    broker = start_tansu(work)
    try:
        admin = kafka_clients.admin(broker.bootstrap)
        admin.create_topics([NewTopic(TOPIC, 4, 1)])
        admin.close()
        consumer = kafka_clients.group_consumer(broker.bootstrap, "bench-lane-wake", "bench-lane-wake",
                                                6.0, 2.0, sole_owner=True)
        consumer.subscribe([TOPIC])
        producer = kafka_clients.producer(broker.bootstrap, "bench-lane-wake")
        seen: dict[bytes, float] = {}
        stop = threading.Event()
        poller = threading.Thread(target=lane, args=(consumer, seen, stop))
        poller.start()
        found = []
        for index in range(rounds):
            time.sleep(IDLE_AFTER_S + 3 + random.uniform(0, LONG_POLL_MS / 1000))
            key = f"record-{index}".encode()
            sent = time.monotonic()
            producer.send(TOPIC, key=key, value=key)
            producer.flush()
            while key not in seen:
                time.sleep(0.005)
            found.append(seen[key] - sent)
        stop.set()
        poller.join()
        consumer.close()
        producer.close()
        return found
    finally:
        broker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=6, help="Records, each after an idle spell")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="erasure-lane-wake-") as scratch:
        found = sorted(waits_s(args.rounds, Path(scratch)))
    print(f"{len(found)} records after an idle spell: median {found[len(found) // 2]:.2f} s, "
          f"mean {sum(found) / len(found):.2f} s, longest {found[-1]:.2f} s "
          f"({', '.join(f'{s:.2f}' for s in found)})")


if __name__ == "__main__":
    main()
