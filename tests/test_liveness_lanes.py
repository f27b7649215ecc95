"""One process, several lanes: each lane has its own heartbeat entry, and the one that stalls is named."""

from __future__ import annotations

import os
from pathlib import Path

from pipeline.liveness import HeartbeatFile, judge, read

STALL_S = 60.0
FIRST_BEAT_S = 120.0


def test_a_process_declares_its_lanes_before_any_turns(tmp_path: Path) -> None:
    heartbeat = HeartbeatFile(tmp_path / "connectors.heartbeat", write_interval_s=0.0)
    heartbeat.expect(["site-db", "brevo"])
    written = read(tmp_path / "connectors.heartbeat")
    assert written == {"pid": os.getpid(), "expected": ["site-db", "brevo"], "loops": {}}
    heartbeat.loop("site-db").beat()
    assert set(read(tmp_path / "connectors.heartbeat")["loops"]) == {"site-db"}  # type: ignore[index]


def test_a_lane_that_never_turned_is_named_once_the_first_beat_allowance_is_over() -> None:
    beats = {"pid": 42, "expected": ["brevo", "site-db"],
             "loops": {"site-db": {"beat_at": 1100.0, "pending": 0, "progress_at": 1100.0}}}
    assert judge(beats, 42, started_at=1000.0, now=1100.0, stall_s=STALL_S, first_beat_s=FIRST_BEAT_S) is None
    reason = judge(beats, 42, started_at=1000.0, now=1121.0, stall_s=STALL_S, first_beat_s=FIRST_BEAT_S)
    assert reason == "its brevo loop has not turned once 121 s after it started"


def test_the_stalled_lane_among_well_ones_is_the_one_named() -> None:
    well = {"beat_at": 2000.0, "pending": 0, "progress_at": 2000.0}
    beats = {"pid": 42, "expected": ["brevo", "session-cache", "site-db"],
             "loops": {"brevo": well, "site-db": well,
                       "session-cache": {"beat_at": 2000.0, "pending": 2, "progress_at": 1900.0}}}
    reason = judge(beats, 42, started_at=0.0, now=2000.5, stall_s=STALL_S, first_beat_s=FIRST_BEAT_S)
    assert reason == "its session-cache loop holds 2 task(s) and finished none for 100 s"


def test_a_heartbeat_of_an_older_process_says_nothing_about_its_lanes() -> None:
    beats = {"pid": 41, "expected": ["brevo"], "loops": {}}
    assert judge(beats, 42, started_at=1000.0, now=1100.0, stall_s=STALL_S, first_beat_s=FIRST_BEAT_S) is None
