"""What an idle `erasure up --demo` costs: CPU % and RSS of each of its processes, broker apart.

    python bench/idle.py [--seconds 60] [--settle-s 20] [--modes one,per-system]

For each mode of `ERASURE_UP_CONNECTOR_PROCESSES` (`one`: every connector lane in one
process, the default; `per-system`: a process per system, as before), starts `erasure up
--demo` in a fresh temporary home with the embedded broker, waits until every child beats
its heartbeat file (the stack is ready), lets it settle (`--settle-s`: the connector lanes
slow their polls after about 10 s with nothing to do), then reads each process's CPU time
from the kernel (/proc, `procstats`) at the start and the end of `--seconds` and its RSS at
the end. Prints one table per mode and a summary line per mode; JSON with `--json`.
Nothing is submitted: this is the price of waiting.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout as well as from an installed package
sys.path.insert(0, str(ROOT / "bench"))

from procstats import CpuMeter, rss_mb  # noqa: E402

from pipeline.devstack.broker import free_port  # noqa: E402

READY_TIMEOUT_S = 180.0
# Children of `up` and their heartbeat files (<home>/run/<name>.heartbeat) by mode; the demo's systems.
DEMO_SYSTEMS = ("site-db", "brevo", "uploads", "session-cache")


def children(pid: int) -> list[int]:
    """The direct children of `pid` (from /proc/*/stat)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        if int(text[text.rindex(")") + 2:].split()[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def label(pid: int) -> str:
    """A short name for one process of the stack: `worker`, `desk`, `connector site-db brevo`, `broker`."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
    except OSError:
        return f"pid {pid}"
    if args and args[0].endswith("tansu"):
        return "broker (tansu)"
    if "pipeline.cli" in args:
        return " ".join(args[args.index("pipeline.cli") + 1:])
    return Path(args[0]).name if args else f"pid {pid}"


def expected_heartbeats(mode: str, systems: int) -> int:
    """worker and desk, plus one connector process, or one per system."""
    return 2 + (1 if mode == "one" else systems)


def wait_ready(home: Path, up: subprocess.Popen[bytes], expected: int, log: Path) -> None:
    """Every child beats (fresh heartbeat files, as many as children): the stack turns."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if up.poll() is not None:
            raise RuntimeError(f"erasure up exited with {up.returncode}:\n{log.read_text()[-3000:]}")
        beats = list((home / "run").glob("*.heartbeat"))
        fresh = [p for p in beats if time.time() - p.stat().st_mtime < 5]
        if len(fresh) >= expected and "erasure pipeline up" in log.read_text(errors="replace"):
            return
        time.sleep(1.0)
    raise RuntimeError(f"the stack was not ready in {READY_TIMEOUT_S:.0f} s:\n{log.read_text()[-3000:]}")


def measure(mode: str, seconds: float, settle_s: float, work: Path) -> dict[str, Any]:
    home = work / mode / ".erasure"
    home.parent.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items()
           if k not in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL") and not k.startswith("ERASURE_")}
    env.update(ERASURE_HOME_DIR=str(home), ERASURE_DESK_PORT=str(free_port()),
               ERASURE_UP_CONNECTOR_PROCESSES=mode)
    log = work / mode / "up.log"
    with open(log, "wb") as handle:
        up = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "up", "--demo"], cwd=home.parent,
                              env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_ready(home, up, expected_heartbeats(mode, len(DEMO_SYSTEMS)), log)
        time.sleep(settle_s)
        pids = {f"{label(pid)} [{pid}]": pid for pid in [up.pid, *children(up.pid)]}
        pids[f"erasure up --demo [{up.pid}]"] = pids.pop(f"{label(up.pid)} [{up.pid}]")
        meter = CpuMeter(pids)
        meter.start()
        time.sleep(seconds)
        used = meter.stop()
        rows = [{"process": name, "broker": name.startswith("broker"),
                 "cpu_percent": round(100 * used[name] / seconds, 2), "rss_mb": round(rss_mb(pid), 1)}
                for name, pid in sorted(pids.items())]
    finally:
        os.killpg(up.pid, signal.SIGTERM)
        try:
            up.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait(10)
    pipeline_rows = [r for r in rows if not r["broker"]]
    return {
        "mode": mode, "seconds": seconds, "processes": rows,
        "total_cpu_percent": round(sum(r["cpu_percent"] for r in rows), 2),
        "total_rss_mb": round(sum(r["rss_mb"] for r in rows), 1),
        "pipeline_cpu_percent": round(sum(r["cpu_percent"] for r in pipeline_rows), 2),
        "pipeline_rss_mb": round(sum(r["rss_mb"] for r in pipeline_rows), 1),
    }


def table(result: dict[str, Any]) -> list[str]:
    lines = [f"connector processes: {result['mode']} (idle, {result['seconds']:.0f} s)",
             f"  {'process':<58} {'CPU %':>7} {'RSS MB':>8}"]
    for row in result["processes"]:
        lines.append(f"  {row['process'][:58]:<58} {row['cpu_percent']:>7.2f} {row['rss_mb']:>8.1f}")
    lines.append(f"  {'all but the broker':<58} {result['pipeline_cpu_percent']:>7.2f} "
                 f"{result['pipeline_rss_mb']:>8.1f}")
    lines.append(f"  {'total':<58} {result['total_cpu_percent']:>7.2f} {result['total_rss_mb']:>8.1f}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0, help="How long to measure")
    parser.add_argument("--settle-s", type=float, default=20.0, help="Idle time before measuring")
    parser.add_argument("--modes", default="one,per-system",
                        help="Comma-separated ERASURE_UP_CONNECTOR_PROCESSES values to compare")
    parser.add_argument("--json", action="store_true", help="Print the results as JSON instead")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="erasure-idle-") as scratch:
        for mode in args.modes.split(","):
            result = measure(mode.strip(), args.seconds, args.settle_s, Path(scratch))
            results.append(result)
            if not args.json:
                print("\n".join(table(result)), flush=True)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for result in results:
        print(f"{result['mode']}: {result['total_cpu_percent']:.1f} % of a core, "
              f"{result['total_rss_mb']:.0f} MB RSS in all (broker included)")


if __name__ == "__main__":
    main()
