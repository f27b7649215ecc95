"""A lane's sole owner runs alone: a second process that would take the same partitions is refused.

Two sole owners of one system (or a sole owner and a group member) would each run every task
they read: every erasure done twice. Processes of one machine sharing a home directory claim
their systems with a lock file; group members share theirs.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.devstack.broker import Broker
from pipeline.devstack.demo import Person
from pipeline.devstack.local import LocalPipeline
from pipeline.worker.claims import LaneClaimed, claim_lanes

RUN = uuid.uuid4().hex[:8]
PEOPLE = [Person(f"Claim Essai{RUN}", f"claim.{RUN}@example.test", "+33640000000")]


def test_a_second_sole_owner_of_a_system_is_refused_with_what_to_do(tmp_path: Path) -> None:
    first = claim_lanes(tmp_path, ["site-db", "brevo"], sole_owner=True)
    with pytest.raises(LaneClaimed) as refused:
        claim_lanes(tmp_path, ["brevo"], sole_owner=True)
    message = str(refused.value)
    assert "connector brevo" in message and "sole owner" in message
    assert "ERASURE_CONNECTOR_SOLE_OWNER=false" in message and "pid" in message
    with pytest.raises(LaneClaimed, match="cannot join its consumer group"):
        claim_lanes(tmp_path, ["brevo"], sole_owner=False)
    first.release()
    claim_lanes(tmp_path, ["brevo"], sole_owner=True).release()


def test_group_members_share_a_system_and_keep_a_sole_owner_out(tmp_path: Path) -> None:
    members = [claim_lanes(tmp_path, ["brevo"], sole_owner=False) for _ in range(3)]
    with pytest.raises(LaneClaimed, match="sole owner"):
        claim_lanes(tmp_path, ["brevo"], sole_owner=True)
    claim_lanes(tmp_path, ["site-db"], sole_owner=True).release()  # other systems are not concerned
    for member in members:
        member.release()
    claim_lanes(tmp_path, ["brevo"], sole_owner=True).release()


def test_a_refused_claim_holds_none_of_the_process_s_systems(tmp_path: Path) -> None:
    taken = claim_lanes(tmp_path, ["brevo"], sole_owner=True)
    with pytest.raises(LaneClaimed):
        claim_lanes(tmp_path, ["site-db", "brevo"], sole_owner=True)
    claim_lanes(tmp_path, ["site-db"], sole_owner=True).release()
    taken.release()


def test_a_run_directory_it_cannot_create_is_no_reason_not_to_run(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    home = tmp_path / "home"
    home.write_text("a file where the home directory should be")  # as unwritable as it gets, even for root
    claim_lanes(home / "run", ["brevo"], sole_owner=True).release()
    assert "a second process of it here goes unnoticed" in caplog.text


@pytest.fixture
def pipeline(kafka: Broker, tmp_path: Path) -> Iterator[LocalPipeline]:
    pipeline = LocalPipeline(tmp_path, kafka.bootstrap, f"sqlite:///{tmp_path / 'ledger.db'}", PEOPLE)
    yield pipeline
    pipeline.stop()


@pytest.mark.e2e
def test_a_second_sole_owner_process_exits_and_a_killed_owner_s_successor_starts(
        pipeline: LocalPipeline) -> None:
    assert pipeline.env["ERASURE_CONNECTOR_SOLE_OWNER"] == "true"
    pipeline.start_connector("brevo")
    second = pipeline.spawn("connector-brevo-again", "connector", "brevo")
    assert second.wait(120) == 1
    log = pipeline.log_path("connector-brevo-again").read_text()
    assert "cannot run as its sole owner" in log and "ERASURE_CONNECTOR_SOLE_OWNER=false" in log
    first = pipeline.processes["connector-brevo"]
    assert first.poll() is None, "the first owner runs on"
    pipeline.kill("connector-brevo")  # SIGKILL: the kernel drops its lock
    pipeline.start_connector("brevo")  # ChildExited if it were refused
    assert pipeline.processes["connector-brevo"].poll() is None
