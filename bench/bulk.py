"""Bulk erasure calls against the fakes: `erase` one person at a time vs `erase_batch`.

    python bench/bulk.py [--people 500]

For Segment (regulations), Mixpanel (deletion tasks) and SendGrid (contact delete jobs),
the same N people are erased twice against a fresh fake: one `erase` per person, then
`erase_batch` in batches of the connector's `max_batch`. Each run submits, lets the
fake's jobs end, and polls every task once (the full path to `erased`). Reported per
processor and mode: HTTP calls made (counted by the fake), wall time, and the time the
processor's published rate limit alone would impose on those calls (`connectors.pacing`);
then the ratios one-by-one / batch. The fakes run unthrottled and the lanes unpaced, so
the wall time is the client's and the fake's own work over loopback HTTP.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout as well as from an installed package

from connectors.base import BatchItem, ConnectorError, EraseResult, TaskContext  # noqa: E402
from connectors.pacing import PUBLISHED_LIMITS  # noqa: E402
from connectors.processors.mixpanel import MixpanelConnector, MixpanelSettings  # noqa: E402
from connectors.processors.segment import SegmentConnector, SegmentSettings  # noqa: E402
from connectors.processors.sendgrid import SendgridConnector, SendgridSettings  # noqa: E402
from pipeline.devstack.fake_server import Exchange, FakeProcessor, observe_exchanges  # noqa: E402
from schemas import Identity, SubjectIdentities  # noqa: E402
from tests.fakes.mixpanel import FakeMixpanel  # noqa: E402
from tests.fakes.segment import FakeSegment  # noqa: E402
from tests.fakes.sendgrid import FakeSendgrid  # noqa: E402

SECRET = "bench-secret"
Connector = SegmentConnector | MixpanelConnector | SendgridConnector


def _segment() -> tuple[FakeProcessor, Connector, str]:
    fake = FakeSegment({SECRET}, limit_per_window=10**9, polls_to_finish=None)
    fake.start()
    os.environ["BENCH_SEGMENT_TOKEN"] = SECRET
    return fake, SegmentConnector("segment", SegmentSettings(base_url=fake.url,
                                                             token_env="BENCH_SEGMENT_TOKEN")), "user_id"


def _mixpanel() -> tuple[FakeProcessor, Connector, str]:
    fake = FakeMixpanel(SECRET, {SECRET}, requests_per_second=10**9)
    fake.start()
    os.environ["BENCH_MP_TOKEN"] = SECRET
    return fake, MixpanelConnector("mixpanel", MixpanelSettings(
        base_url=fake.url, project_token_env="BENCH_MP_TOKEN", oauth_token_env="BENCH_MP_TOKEN")), "user_id"


def _sendgrid() -> tuple[FakeProcessor, Connector, str]:
    fake = FakeSendgrid({SECRET}, limit_per_window=10**9, polls_to_complete=None)
    fake.start()
    os.environ["BENCH_SENDGRID_KEY"] = SECRET
    return fake, SendgridConnector("sendgrid", SendgridSettings(base_url=fake.url,
                                                                api_key_env="BENCH_SENDGRID_KEY")), "email"


PROCESSORS: dict[str, Callable[[], tuple[FakeProcessor, Connector, str]]] = {
    "segment": _segment, "mixpanel": _mixpanel, "sendgrid": _sendgrid}


def _seed(fake: FakeProcessor, values: Sequence[str]) -> None:
    for value in values:
        if isinstance(fake, FakeSendgrid):
            fake.add_contact(value)
        elif isinstance(fake, FakeSegment | FakeMixpanel):
            fake.add_user(value)


def _items(system: str, kind: str, values: Sequence[str], refs: Sequence[str | None]) -> list[BatchItem]:
    return [BatchItem(SubjectIdentities(identities=[Identity(identity_type=kind, identity_value=v)]),  # type: ignore[arg-type]
                      TaskContext(request_id=f"00000000-0000-4000-8000-{n:012d}", system=system, attempt=1,
                                  job_ref=ref))
            for n, (v, ref) in enumerate(zip(values, refs, strict=True))]


def _run(connector: Connector, items: list[BatchItem], batched: bool) -> list[EraseResult | ConnectorError]:
    if not batched:
        return [connector.erase(i.subject, i.context) for i in items]
    size = connector.max_batch
    return [outcome for start in range(0, len(items), size)
            for outcome in connector.erase_batch(items[start:start + size])]


def measure(name: str, people: int, batched: bool) -> dict[str, Any]:
    fake, connector, kind = PROCESSORS[name]()
    calls = 0
    lock = threading.Lock()

    def observe(served_by: FakeProcessor, exchange: Exchange) -> None:
        nonlocal calls
        if served_by is fake:
            with lock:
                calls += 1

    values = [f"bench-{n}@example.net" if kind == "email" else f"bench-user-{n}" for n in range(people)]
    _seed(fake, values)
    stop = observe_exchanges(observe)
    try:
        began = time.perf_counter()
        submitted = _run(connector, _items(name, kind, values, [None] * people), batched)
        refs = [o.job_ref if isinstance(o, EraseResult) else None for o in submitted]
        fake.finish_jobs()  # type: ignore[attr-defined]
        final = _run(connector, _items(name, kind, values, refs), batched)
        wall_s = time.perf_counter() - began
    finally:
        stop()
        connector.close()
        fake.stop()
    erased = sum(1 for o in final if isinstance(o, EraseResult) and o.status == "erased")
    limit = PUBLISHED_LIMITS[name]
    return {"processor": name, "mode": "erase_batch" if batched else "erase", "people": people,
            "erased": erased, "http_calls": calls, "wall_s": round(wall_s, 3),
            "at_published_limit_s": round(calls / limit.per_second, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--people", type=int, default=500)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON only")
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    for name in PROCESSORS:
        single, batch = measure(name, args.people, False), measure(name, args.people, True)
        rows += [single, batch]
        if not args.json:
            for row in (single, batch):
                print(f"{name:9} {row['mode']:12} {row['people']} people, {row['erased']} erased: "
                      f"{row['http_calls']:5} calls, {row['wall_s']:7.3f} s wall, "
                      f"{row['at_published_limit_s']:8.1f} s at the published limit")
            print(f"{name:9} ratio        calls {single['http_calls'] / batch['http_calls']:.0f}x, "
                  f"wall {single['wall_s'] / batch['wall_s']:.1f}x")
    if args.json:
        print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
