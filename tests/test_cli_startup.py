"""`erasure --help` and the light commands start without the heavy frameworks (faust, FastAPI...)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli_probe import probe

HEAVY = ("faust", "fastapi", "uvicorn", "sqlalchemy", "kafka", "aiokafka", "matplotlib", "playwright")
def imported(args: tuple[str, ...], home: Path) -> tuple[str, set[str]]:
    """The exit code of `erasure ARGS`, and which of the heavy frameworks it imported."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ERASURE_")}
    env["ERASURE_HOME_DIR"] = str(home)
    code, modules = probe(args, env)
    return code, {m.split(".")[0] for m in modules} & set(HEAVY)


@pytest.mark.parametrize("args", [("--help",), ("status", "--help"), ("up", "--help"), ("refuse", "--help"),
                                  ("desk", "--help"), ("worker", "--help")])
def test_help_imports_no_heavy_framework(args: tuple[str, ...], tmp_path: Path) -> None:
    code, heavy = imported(args, tmp_path)
    assert code in ("0", "None") and heavy == set()


def test_a_light_command_that_works_imports_no_framework_it_does_not_use(tmp_path: Path) -> None:
    code, heavy = imported(("keys", "init"), tmp_path)
    assert code in ("0", "None") and (tmp_path / "keys").exists()
    assert not heavy & {"faust", "fastapi", "uvicorn", "matplotlib", "playwright", "aiokafka"}


def test_up_offers_one_process_for_every_lane_or_one_per_system(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ERASURE_")}
    shown = subprocess.run([sys.executable, "-m", "pipeline.cli", "up", "--help"], env=env,
                           capture_output=True, text=True, timeout=120, check=True).stdout
    assert "--connector-processes [one|per-system]" in shown
