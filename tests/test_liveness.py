"""Heartbeats: what a process writes, and how its supervisor judges it (hung, stuck with work, or well)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline import liveness
from pipeline.liveness import HeartbeatFile, judge, loop_beat, read

STALL_S = 60.0
FIRST_BEAT_S = 120.0


def document(pid: int, **loops: tuple[float, int, float]) -> dict[str, object]:
    return {"pid": pid, "loops": {name: {"beat_at": beat_at, "pending": pending, "progress_at": progress_at}
                                  for name, (beat_at, pending, progress_at) in loops.items()}}


def test_a_process_writes_its_pid_and_each_loop_with_its_pending_work(tmp_path: Path) -> None:
    heartbeat = HeartbeatFile(tmp_path / "run" / "connector-others.heartbeat", write_interval_s=0.0)
    heartbeat.loop("brevo").beat(pending=3, done=0)
    heartbeat.loop("site-db").beat()
    written = read(tmp_path / "run" / "connector-others.heartbeat")
    assert written is not None and written["pid"] == os.getpid()
    assert written["loops"]["brevo"]["pending"] == 3 and written["loops"]["site-db"]["pending"] == 0
    assert not list((tmp_path / "run").glob("*.heartbeat.*")), "no scratch file left behind"


def test_finishing_work_is_progress_and_holding_it_is_not(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter([100.0, 130.0, 160.0])
    monkeypatch.setattr(liveness.time, "time", lambda: next(clock))
    path = tmp_path / "worker.heartbeat"
    heartbeat = HeartbeatFile(path, write_interval_s=0.0)
    heartbeat.loop("brevo").beat(pending=2, done=5)
    heartbeat.loop("brevo").beat(pending=2, done=5)
    assert read(path)["loops"]["brevo"] == {"beat_at": 130.0, "pending": 2, "progress_at": 100.0}  # type: ignore[index]
    heartbeat.loop("brevo").beat(pending=2, done=6)
    assert read(path)["loops"]["brevo"]["progress_at"] == 160.0  # type: ignore[index]


def test_without_a_heartbeat_file_beating_does_nothing(tmp_path: Path) -> None:
    loop_beat(None, "desk").beat(pending=1)
    assert list(tmp_path.iterdir()) == []


def test_one_process_shares_one_file_between_its_loops(tmp_path: Path) -> None:
    path = tmp_path / "connector-others.heartbeat"
    assert loop_beat(path, "a").owner is loop_beat(path, "b").owner
    liveness._files.pop(path)


def test_a_loop_that_turns_and_finishes_its_work_is_well() -> None:
    beats = document(42, brevo=(1000.0, 3, 995.0))
    assert judge(beats, 42, started_at=0.0, now=1001.0, stall_s=STALL_S, first_beat_s=FIRST_BEAT_S) is None


def test_a_loop_that_stopped_turning_is_hung_whatever_its_work() -> None:
    beats = document(42, brevo=(1000.0, 0, 1000.0))
    reason = judge(beats, 42, started_at=0.0, now=1061.0, stall_s=STALL_S, first_beat_s=FIRST_BEAT_S)
    assert reason == "its brevo loop has not turned for 61 s"


def test_a_loop_that_turns_but_finishes_none_of_its_work_is_stuck() -> None:
    beats = document(42, faust=(1100.0, 0, 1100.0), brevo=(1100.0, 2, 1000.0))
    reason = judge(beats, 42, started_at=0.0, now=1100.5, stall_s=STALL_S, first_beat_s=FIRST_BEAT_S)
    assert reason == "its brevo loop holds 2 task(s) and finished none for 100 s"


def test_an_idle_loop_is_not_stuck() -> None:
    beats = document(42, brevo=(1100.0, 0, 1000.0))
    assert judge(beats, 42, started_at=0.0, now=1100.5, stall_s=STALL_S, first_beat_s=FIRST_BEAT_S) is None


def test_a_new_process_has_time_for_its_first_beat_and_no_more() -> None:
    old_pid_file = document(41, brevo=(0.0, 0, 0.0))  # left by the process it replaced
    assert judge(old_pid_file, 42, started_at=1000.0, now=1100.0, stall_s=STALL_S,
                 first_beat_s=FIRST_BEAT_S) is None
    assert judge(None, 42, started_at=1000.0, now=1121.0, stall_s=STALL_S,
                 first_beat_s=FIRST_BEAT_S) == "no heartbeat 121 s after it started"


def test_an_unreadable_file_reads_as_none(tmp_path: Path) -> None:
    (tmp_path / "half.heartbeat").write_text("{not json")
    assert read(tmp_path / "half.heartbeat") is None and read(tmp_path / "missing.heartbeat") is None
