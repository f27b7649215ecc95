"""Pacing against Brevo's documented limit: share of the limit used, and 429 answers, side by side.

    python bench/pacing.py [--requests 2000] [--limit-per-s 10] [--lanes 4]

A fake Brevo enforces the documented limit (10 requests per second on the contacts
family, counted in fixed windows, 429 plus `x-sib-ratelimit-*` when exceeded). The same
burst of erasures goes through the Brevo connector twice: unpaced (the lanes send as
fast as they can and wait only when answered 429, as the worker's re-queue does), then
paced at the published limit (`connectors.pacing`). Reported per run: the share of the
limit used (accepted calls over what the limit allows in the burst's duration, its last
window counted whole) and the share of calls answered 429. Goal: at least 90 % of the
limit, under 1 % of calls answered 429.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout as well as from an installed package

from connectors.base import RetryableError, TaskContext  # noqa: E402
from connectors.pacing import PACERS, RateLimit  # noqa: E402
from connectors.processors.brevo import BrevoSettings  # noqa: E402
from connectors.registry import build_connector  # noqa: E402
from pipeline.devstack.fake_brevo import FakeBrevo  # noqa: E402
from pipeline.devstack.fake_server import TokenBucket  # noqa: E402
from schemas import SubjectIdentities  # noqa: E402
from schemas.models import Identity  # noqa: E402

API_KEY_ENV = "BENCH_BREVO_KEY"
SYSTEM = "newsletter"


def _seed(fake: FakeBrevo, emails: list[str], limit_per_s: int) -> None:
    fake.bucket = TokenBucket(len(emails) + 1, 3600.0)
    for email in emails:
        fake.handle("POST", "/v3/contacts", {}, {"api-key": "bench"}, {"email": email})
    fake.bucket = TokenBucket(limit_per_s, 1.0)  # the documented limit, enforced from now on
    fake.state.responses.clear()


def _burst(url: str, emails: list[str], lanes: int, paced: RateLimit | None) -> float:
    """Erase every e-mail from `lanes` threads; a 429 is waited out as the worker's re-queue does."""
    connector = build_connector(SYSTEM, "brevo", BrevoSettings(base_url=url, api_key_env=API_KEY_ENV), paced)
    if paced is None:
        PACERS.configure(SYSTEM, "unpaced")  # no declared limit: only the processor's answers
    queue = list(emails)
    lock = threading.Lock()

    def lane() -> None:
        while True:
            with lock:
                if not queue:
                    return
                email = queue.pop()
            subject = SubjectIdentities(identities=[Identity(identity_type="email", identity_value=email)])
            context = TaskContext(request_id="bench", system=SYSTEM, attempt=1)
            while True:
                try:
                    connector.erase(subject, context)
                    break
                except RetryableError as exc:
                    time.sleep(exc.retry_after_s if exc.retry_after_s is not None else 0.1)

    started = time.monotonic()
    threads = [threading.Thread(target=lane) for _ in range(lanes)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    connector.close()
    return time.monotonic() - started


def run(requests: int, limit_per_s: int, lanes: int) -> dict[str, Any]:
    os.environ[API_KEY_ENV] = "bench"
    emails = [f"bench.{n}@example.org" for n in range(requests)]
    figures: dict[str, Any] = {"requests": requests, "limit_per_s": limit_per_s, "lanes": lanes}
    for name, paced in (("unpaced", None), ("paced", RateLimit(requests=limit_per_s, per_s=1.0))):
        PACERS.reset()
        fake = FakeBrevo({"bench"})
        url = fake.start()
        try:
            _seed(fake, emails, limit_per_s)
            elapsed_s = _burst(url, emails, lanes, paced)
            answered = dict(fake.state.responses)
            left = fake.contact_count()
        finally:
            fake.stop()
        calls = sum(answered.values())
        throttled = answered.get(429, 0)
        figures[name] = {
            "elapsed_s": round(elapsed_s, 1),
            "calls": calls,
            "answered_429": throttled,
            "share_429": round(throttled / calls, 4) if calls else 0.0,
            # the last window counted whole: a burst shorter than a window is no 100 %
            "share_of_limit": round((calls - throttled) / ((elapsed_s + 1.0) * limit_per_s), 3),
            "contacts_left": left,
        }
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--limit-per-s", type=int, default=10, help="Brevo's documented limit: 10/s")
    parser.add_argument("--lanes", type=int, default=4, help="threads sending for the one system")
    args = parser.parse_args()
    figures = run(args.requests, args.limit_per_s, args.lanes)
    print(json.dumps(figures, indent=2))
    for name in ("unpaced", "paced"):
        run_figures = figures[name]
        print(f"{name:>8}: {run_figures['share_of_limit']:.1%} of the limit used, "
              f"{run_figures['share_429']:.2%} of {run_figures['calls']} calls answered 429, "
              f"{run_figures['elapsed_s']} s", file=sys.stderr)


if __name__ == "__main__":
    main()
