"""How long `erasure status` takes end to end, process start included, on any ledger.

    python bench/cli_latency.py [--url postgresql+psycopg://postgres@127.0.0.1:5432/ledger1m]
                                [--runs 20] [--request-id ID] [--checkout DIR ...]

Runs `erasure status ID`, `erasure status ID --json` and `erasure status --lanes` `--runs` times
each (after one warm-up), each a fresh `python -m pipeline.cli`, and prints per command the p50 and
p95 wall time and the p50 and p95 CPU time (user + system of the finished child, from
getrusage(RUSAGE_CHILDREN)), with the load average before and after. CPU time is the figure to
compare under load; wall time is what an officer waits.

Before/after: give each checkout (`git archive main | tar -x -C /tmp/before`, and `.`) with
`--checkout`; their runs are interleaved, so that a change of load falls on both alike. The warm-up
writes the checkout's bytecode (even under PYTHONDONTWRITEBYTECODE), as installing the package does.

Without `--url`, a fresh SQLite ledger in a temporary home (no request: `status ID` then times the
"no request" path, which reads as much). Without `--request-id`, the newest request of the ledger
(read with one SELECT here; the commands timed only read as well, apart from what opening a ledger
does to an out-of-date schema).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def environment(checkout: Path, home: Path, url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ERASURE_")}
    env["ERASURE_HOME_DIR"] = str(home)
    env["PYTHONPATH"] = str(checkout)
    if url is not None:
        env["ERASURE_DATABASE_URL"] = url
    return env


def newest_request(url: str) -> str | None:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(
                "SELECT request_id FROM erasure_requests ORDER BY received_at DESC LIMIT 1")).scalar()
    except sa.exc.DBAPIError:
        return None
    finally:
        engine.dispose()


def run_once(args: Sequence[str], checkout: Path, env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and CPU seconds of one `erasure ARGS` (exit 0, or 1 for a request not found)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pipeline.cli", *args], cwd=checkout, env=env, check=False,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall_s = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode not in (0, 1) or (done.returncode == 1 and b"no request" not in done.stderr):
        raise RuntimeError(f"erasure {' '.join(args)} ({checkout}) exited {done.returncode}: "
                           f"{done.stderr.decode()[-500:]}")
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall_s, cpu_s


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[-1] if len(values) > 1 else values[0]


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def time_commands(checkouts: list[Path], envs: list[dict[str, str]], request_id: str, runs: int) -> None:
    commands = (("status", request_id), ("status", request_id, "--json"), ("status", "--lanes"))
    print(f"{'command':<26} {'checkout':<28} {'wall p50':>8} {'p95':>6} {'CPU p50':>8} {'p95':>6}  "
          "load before / after")
    for command in commands:
        for checkout, env in zip(checkouts, envs, strict=True):  # warm-up: bytecode, page cache
            run_once(command, checkout, {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"})
        started_load = load()
        samples: list[list[tuple[float, float]]] = [[] for _ in checkouts]
        for _ in range(runs):
            for n, (checkout, env) in enumerate(zip(checkouts, envs, strict=True)):
                samples[n].append(run_once(command, checkout, env))
        label = "erasure " + " ".join("ID" if part == request_id else part for part in command)
        for checkout, taken in zip(checkouts, samples, strict=True):
            walls = [s[0] * 1000 for s in taken]
            cpus = [s[1] * 1000 for s in taken]
            print(f"{label:<26} {str(checkout)[-28:]:<28} {statistics.median(walls):>6.0f}ms "
                  f"{p95(walls):>4.0f}ms {statistics.median(cpus):>6.0f}ms {p95(cpus):>4.0f}ms  "
                  f"{started_load} / {load()}", flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="the ledger's SQLAlchemy URL (default: a fresh SQLite ledger)")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--request-id", help="the request `status ID` shows (default: the newest)")
    parser.add_argument("--checkout", type=Path, action="append",
                        help="a checkout to time (repeat to compare; default: this one)")
    args = parser.parse_args(argv)
    checkouts = [c.resolve() for c in args.checkout or [ROOT]]
    with tempfile.TemporaryDirectory(prefix="erasure-cli-latency-") as scratch:
        envs = [environment(c, Path(scratch), args.url) for c in checkouts]
        if args.url is None:  # the fresh ledger's schema: created once, not by the first timed run
            subprocess.run([sys.executable, "-m", "pipeline.cli", "db", "upgrade"], cwd=checkouts[0],
                           env=envs[0], check=True, capture_output=True)
        request_id = args.request_id or (newest_request(args.url) if args.url else None)
        print(f"ledger {args.url or 'fresh SQLite'}; request {request_id or '(none: the not-found path)'}; "
              f"{args.runs} runs each, interleaved over {len(checkouts)} checkout(s)")
        time_commands(checkouts, envs, request_id or "00000000-0000-4000-8000-000000000000", args.runs)


if __name__ == "__main__":
    main()
