"""The desk tells sweep requests apart from people's own: a channel column and a channel filter."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from pipeline.deadlines import due_at
from pipeline.devstack.broker import Broker
from schemas import ErasurePlanned, PlannedTarget, SealedIdentities
from tests.desk_fixtures import VIEWER, Desk, seeded_desk
from tests.desk_server import login


@pytest.fixture(scope="module")
def desk(kafka: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Desk, str]]:
    for seeded in seeded_desk(tmp_path_factory.mktemp("desk"), kafka):
        swept, now = str(uuid.uuid4()), datetime.now(UTC)
        seeded.ledger.record([ErasurePlanned(
            request_id=swept, received_at=now, due_at=due_at(now), subject_ref="sr_" + "0" * 32,
            identities=SealedIdentities(alg="secretbox-xsalsa20poly1305", key_id=swept,
                                        ciphertext="c2VjcmV0"),
            channel="retention", verification="not_applicable", planned_at=now,
            targets=[PlannedTarget(system="site-db", expected_turnaround_s=3600)])], now)
        yield seeded, swept


def test_the_list_filters_sweep_requests_apart(desk: tuple[Desk, str]) -> None:
    seeded, swept = desk
    viewer = login(seeded.url, *VIEWER)
    people = [seeded.overdue_manual, seeded.failed, seeded.held, seeded.fresh]
    everything = viewer.get("/").text
    assert swept in everything and all(rid in everything for rid in people)
    assert "<td>retention</td>" in everything and "<td>contact_form</td>" in everything
    sweeps = viewer.get("/", params={"channel": "retention"}).text
    assert swept in sweeps and not any(rid in sweeps for rid in people)
    own = viewer.get("/", params={"channel": "people"}).text
    assert swept not in own and all(rid in own for rid in people)
    assert '<option value="people" selected>' in own


def test_the_request_page_says_who_started_it(desk: tuple[Desk, str]) -> None:
    seeded, swept = desk
    page = login(seeded.url, *VIEWER).get(f"/requests/{swept}").text
    assert "retention" in page and "not_applicable" in page
