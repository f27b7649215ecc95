"""How long `erasure` takes to start: CPU seconds until a command is of use, and what it imported.

    python bench/startup.py [--runs 5]

For `erasure --help`, `erasure status --help` and `erasure keys init` (in a fresh home: a light
command that does work), the CPU time (user + system, from the kernel's accounting of the
finished child) and the wall time of each run, median over `--runs`; and, once, which heavy
libraries the command imported. For `erasure desk` (a fresh home with keys), the CPU time the
process has used when `/healthz` first answers. CPU time, not wall time, is the figure to
compare: other work on the machine lengthens the wall time, not the CPU time.
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
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout as well as from an installed package
sys.path.insert(0, str(ROOT / "bench"))

from procstats import cpu_s  # noqa: E402

from pipeline.devstack.broker import free_port  # noqa: E402

HEAVY = ("faust", "fastapi", "uvicorn", "sqlalchemy", "alembic", "kafka", "aiokafka", "matplotlib",
         "playwright", "connectors.registry", "pipeline.ledger", "yaml")
COMMANDS = (("--help",), ("status", "--help"), ("keys", "init"))
PROBE = ("import runpy, sys; sys.argv = ['erasure', *sys.argv[1:]]\n"
         "try:\n    runpy.run_module('pipeline.cli', run_name='__main__')\nexcept SystemExit:\n    pass\n"
         "heavy = {heavy!r}\n"
         "print('IMPORTED', ' '.join(h for h in heavy if h in sys.modules), file=sys.stderr)\n")


def environment(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ERASURE_")}
    env["ERASURE_HOME_DIR"] = str(home)
    return env


def run_once(args: tuple[str, ...], env: dict[str, str]) -> tuple[float, float]:
    """CPU seconds and wall seconds of one `erasure ARGS` run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pipeline.cli", *args], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall_s = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), wall_s


def imported(args: tuple[str, ...], env: dict[str, str]) -> str:
    probe = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY), *args], env=env,
                           capture_output=True, text=True, check=False)
    lines = [line for line in probe.stderr.splitlines() if line.startswith("IMPORTED")]
    return (lines[-1].removeprefix("IMPORTED").strip() or "none") if lines else "?"


def desk_first_answer(work: Path) -> tuple[float, float]:
    """CPU seconds and wall seconds of `erasure desk` until `/healthz` answers."""
    home = work / "desk-home"
    env = environment(home)
    subprocess.run([sys.executable, "-m", "pipeline.cli", "keys", "init"], env=env, check=True,
                   capture_output=True)
    port = free_port()
    started = time.perf_counter()
    desk = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "desk", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            if desk.poll() is not None:
                raise RuntimeError(f"the desk exited with {desk.returncode}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                    return cpu_s(desk.pid), time.perf_counter() - started
            except OSError:
                time.sleep(0.05)
    finally:
        desk.terminate()
        desk.wait(20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(f"{'command':<28} {'CPU s':>7} {'wall s':>7}  heavy libraries imported")
    with tempfile.TemporaryDirectory(prefix="erasure-startup-") as scratch:
        for command in COMMANDS:
            env = environment(Path(scratch) / "home")
            runs = [run_once(command, env) for _ in range(args.runs)]
            cpu = statistics.median(r[0] for r in runs)
            wall = statistics.median(r[1] for r in runs)
            print(f"{'erasure ' + ' '.join(command):<28} {cpu:>7.2f} {wall:>7.2f}  {imported(command, env)}",
                  flush=True)
        desks = [desk_first_answer(Path(scratch) / f"desk-{n}") for n in range(max(1, args.runs // 2))]
        print(f"{'erasure desk (to /healthz)':<28} {statistics.median(d[0] for d in desks):>7.2f} "
              f"{statistics.median(d[1] for d in desks):>7.2f}")


if __name__ == "__main__":
    main()
