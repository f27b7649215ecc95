"""Run an `erasure` command in a fresh interpreter and report its exit code and every module it imported.

For the tests that guard what a command imports (start-up cost): they assert on `sys.modules`, not on time.
"""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import runpy, sys
sys.argv = ["erasure", *sys.argv[1:]]
try:
    runpy.run_module("pipeline.cli", run_name="__main__")
except SystemExit as exc:
    code = exc.code
else:
    code = 0
print("EXIT", code, file=sys.stderr)
print("IMPORTED", *sorted(sys.modules), file=sys.stderr)
"""


def probe(args: tuple[str, ...], env: dict[str, str]) -> tuple[str, set[str]]:
    """The exit code of `erasure ARGS` (as printed: "0", "None", "2", ...), and every module it imported."""
    done = subprocess.run([sys.executable, "-c", PROBE, *args], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    lines = dict(line.split(" ", 1) for line in done.stderr.splitlines()
                 if line.startswith(("EXIT ", "IMPORTED ")))
    assert "EXIT" in lines, done.stderr[-2000:]
    return lines["EXIT"], set(lines["IMPORTED"].split())
