"""The scale benchmark's seeder writes a ledger the pipeline's own verifier finds intact, with the mix
the benchmark claims (states, 4 to 13 systems, channels, holds and their releases, re-drives)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from bench.seed_ledger import seed
from pipeline.ledger import Ledger, events_table, holds_table, requests_table, systems_table
from pipeline.ledger.checkpoints import verify_ledger

END = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    return str(request.getfixturevalue("postgres_url"))


def test_the_seeded_ledger_verifies_and_has_the_claimed_mix(url: str) -> None:
    figures = seed(url, 400, 3, END, workers=1, replace=False, report=False)
    ledger = Ledger(url)
    try:
        result = verify_ledger(ledger.engine, ledger.writer, END, full=True)
        assert result.intact and result.checked == figures["events"] == ledger.chain_head()[0]
        with ledger.engine.connect() as conn:
            states = Counter(conn.execute(sa.select(requests_table.c.status)).scalars())
            channels = Counter(conn.execute(sa.select(requests_table.c.channel)).scalars())
            per_request = Counter(conn.execute(sa.select(systems_table.c.request_id)).scalars())
            kinds = Counter(conn.execute(sa.select(events_table.c.kind)).scalars())
            released = conn.execute(sa.select(sa.func.count()).where(
                holds_table.c.released_at.is_not(None))).scalar_one()
            overdue = conn.execute(sa.select(sa.func.count()).where(
                requests_table.c.status == "in_progress", requests_table.c.due_at < END)).scalar_one()
            first, last = conn.execute(sa.select(sa.func.min(requests_table.c.received_at),
                                                 sa.func.max(requests_table.c.received_at))).one()
        assert set(states) == {"in_progress", "completed", "completed_with_holds", "needs_attention"}
        assert {"contact_form", "email", "http_api", "retention"} <= set(channels)
        assert min(per_request.values()) >= 4 and max(per_request.values()) <= 13
        assert {"planned", "outcome", "completed", "redriven", "release_requested", "released",
                "data_key_destroyed", "manual_confirmed"} <= set(kinds)
        assert released > 0 and overdue > 0
        assert (last - first).days > 700, "two years of requests"
    finally:
        ledger.close()


def test_the_same_seed_gives_the_same_chain(tmp_path: Path) -> None:
    heads = []
    for name in ("a", "b"):
        url = f"sqlite:///{tmp_path / name}.db"
        seed(url, 60, 9, END, workers=1, replace=False, report=False)
        ledger = Ledger(url)
        heads.append(ledger.chain_head())
        ledger.close()
    assert heads[0] == heads[1] and heads[0][0] > 60


def test_a_ledger_with_events_is_not_seeded_over(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    seed(url, 5, 1, END, workers=1, replace=False, report=False)
    with pytest.raises(SystemExit, match=r"holds \d+ events already: pass --replace"):
        seed(url, 5, 1, END, workers=1, replace=False, report=False)
    assert seed(url, 5, 2, END, workers=1, replace=True, report=False)["requests"] == 5
