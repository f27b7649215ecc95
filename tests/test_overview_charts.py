"""The overview's charts as the desk serves them: SVG that the desk's Content-Security-Policy lets a browser
draw (no style attribute, no style or script element), named and described, ids unique on the page, and
the figures an officer reads off them; the home page with its charts, the filtered list without."""

from __future__ import annotations

import base64
import hashlib
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from pipeline.desk.charts import Chart, overview_charts
from pipeline.desk.inline_svg import SVG_NS, XLINK_NS
from pipeline.desk.overview_cache import OverviewCache
from pipeline.ledger import Ledger, open_ledger
from pipeline.ledger.overview import overview
from tests.desk_fixtures import OFFICER
from tests.desk_server import login
from tests.overview_seed import NOW, seed_overview
from tests.security.desk_app import SmallDesk, small_desk

SVG = f"{{{SVG_NS}}}"
KEYS = ["days-left", "failing-systems", "requests-per-week", "sweeps-per-week", "time-to-completion",
        "holds-ending"]


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    opened = open_ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    yield opened
    opened.close()


def texts(svg: ET.Element) -> set[str]:
    return {" ".join(t.itertext()).strip() for t in svg.iter(f"{SVG}text")}


def parse(chart: Chart) -> ET.Element:
    assert chart.svg is not None, chart.key
    return ET.fromstring(str(chart.svg))


def test_charts_pass_the_policy_and_say_what_they_show(ledger: Ledger) -> None:
    seed_overview(ledger)
    charts = overview_charts(overview(ledger.engine, NOW))
    assert [c.key for c in charts] == KEYS
    ids: list[str] = []
    for chart in charts:
        svg = parse(chart)
        assert svg.tag == f"{SVG}svg" and svg.get("role") == "img"
        assert svg.find(f"{SVG}title").text == chart.title  # type: ignore[union-attr]
        assert svg.find(f"{SVG}desc").text == chart.description  # type: ignore[union-attr]
        for element in svg.iter():
            assert "style" not in element.attrib, (chart.key, element.tag)
            assert element.tag not in (f"{SVG}style", f"{SVG}script", f"{SVG}foreignObject"), chart.key
            assert not any(name.startswith("on") for name in element.attrib), chart.key
        own = [e.get("id") for e in svg.iter() if e.get("id")]
        ids += own  # type: ignore[arg-type]
        refs = {v[1:] for e in svg.iter() for k, v in e.attrib.items() if k == f"{{{XLINK_NS}}}href"}
        refs |= {m for e in svg.iter() for v in e.attrib.values()
                 for m in re.findall(r"url\(#([^)]+)\)", v)}
        assert refs <= set(own), f"{chart.key}: every reference resolves inside its own chart"
        assert svg.get("fill") is None and any(e.get("fill") for e in svg.iter()), "colours are attributes"
    assert len(ids) == len(set(ids)), "no id repeats on the page"

    by_key = {c.key: c for c in charts}
    assert by_key["days-left"].rows == [
        ["overdue", "1"], ["under 2 days", "1"], ["2 to 7 days", "1"], ["7 to 14 days", "0"],
        ["14 to 31 days", "3"], ["31 days or more", "0"]]
    assert {"overdue", "under 2", "14 to 31", "days or more"} <= texts(parse(by_key["days-left"]))
    assert {"brevo", "site-db", "failed", "retrying", "silent"} <= texts(parse(by_key["failing-systems"]))
    assert by_key["failing-systems"].rows == [["brevo", "1", "1", "4"], ["site-db", "0", "1", "5"]]
    people = texts(parse(by_key["requests-per-week"]))
    assert {"completed", "completed with holds", "needs attention", "in progress"} <= people
    assert "10 people's requests received" in by_key["requests-per-week"].description
    assert "3 retention sweeps received" in by_key["sweeps-per-week"].description
    assert by_key["sweeps-per-week"].rows[24][1:] == ["2", "0", "2"]  # completed, in progress, total
    assert by_key["time-to-completion"].rows == [["brevo", "4", "10 s", "1.7 min"],
                                                 ["site-db", "4", "40 s", "30 min"]]
    assert by_key["time-to-completion"].description.startswith(
        "Time from a request's plan to each system's answer (erased, not found or held), over the answers "
        "of the last 4 weeks, to within 20%")
    assert {"median", "95th percentile", "site-db"} <= texts(parse(by_key["time-to-completion"]))
    assert by_key["holds-ending"].rows[:5] == [["ended, release due", "1"], ["Nov 2026", "1"],
                                              ["Dec 2026", "1"], ["Jan 2027", "0"], ["Feb 2027", "1"]]


def test_an_empty_ledger_says_so_instead_of_drawing(ledger: Ledger) -> None:
    charts = overview_charts(overview(ledger.engine, NOW))
    assert [c.svg for c in charts] == [None] * len(KEYS)
    assert {c.key: c.description for c in charts} == {
        "days-left": "No request is in progress.",
        "failing-systems": "No system is failing, retrying or silent.",
        "requests-per-week": "No people's requests received in the 26 weeks from 25 May 2026 to 22 Nov 2026.",
        "sweeps-per-week": "No retention sweeps received in the 26 weeks from 25 May 2026 to 22 Nov 2026.",
        "time-to-completion": "No system answered in the last 4 weeks.",
        "holds-ending": "No legal hold in force ends in the next 12 months.",
    }


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[SmallDesk]:
    with small_desk(tmp_path) as served:
        yield served


def home_with_charts(officer: httpx.Client) -> httpx.Response:
    """The home page once its first drawing is done (pages before it say the charts are being drawn)."""
    for _ in range(100):
        home = officer.get("/")
        assert home.status_code == 200
        if 'id="overview"' in home.text:
            return home
        assert 'id="overview-pending"' in home.text and "reload the page in a few seconds" in home.text
        time.sleep(0.2)
    raise AssertionError("the charts were never drawn")


def test_the_home_page_shows_the_charts_and_the_filtered_list_does_not(desk: SmallDesk) -> None:
    officer = login(desk.url, *OFFICER)
    home = home_with_charts(officer)
    figures = re.findall(r'<figure class="chart" id="chart-([a-z-]+)"', home.text)
    assert figures == KEYS
    assert home.text.count('role="img"') >= 2  # the small desk's request: days left, the silent system
    assert desk.request_id in home.text, "the request list is still there"
    policy = home.headers["content-security-policy"]
    for style in re.findall(r"<style>(.*?)</style>", home.text, re.DOTALL):
        digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in policy, "every inline style of the page is allowed by hash"
    assert "<script" not in home.text and ' style="' not in home.text
    assert re.search(r"Figures read at \d\d:\d\d:\d\d UTC", home.text)
    filtered = officer.get("/", params={"status": "in_progress"})
    assert filtered.status_code == 200 and 'id="overview"' not in filtered.text
    assert 'id="overview-pending"' not in filtered.text
    assert desk.request_id in filtered.text


def test_the_first_page_does_not_wait_for_the_first_drawing(ledger: Ledger) -> None:
    clock = [1000.0]
    cache = OverviewCache(ledger.engine, max_age_s=60, first_wait_s=0, clock=lambda: clock[0])
    assert cache.get(NOW) is None, "the first drawing is under way, in the background"
    assert cache.get(NOW + timedelta(seconds=1)) is None, "one drawing at a time"
    cache.wait()
    first = cache.get(NOW + timedelta(seconds=2))
    assert first is not None and first.read_at == NOW, "the drawing started by the first caller"


def test_the_drawing_is_shared_for_a_minute_then_read_again(ledger: Ledger) -> None:
    clock = [1000.0]
    cache = OverviewCache(ledger.engine, max_age_s=60, first_wait_s=0, clock=lambda: clock[0])
    cache.get(NOW)
    cache.wait()
    first = cache.get(NOW)
    assert first is not None
    assert first.read_at == NOW and first.charts[0].description == "No request is in progress."
    seed_overview(ledger)
    clock[0] += 59
    assert cache.get(NOW + timedelta(seconds=59)) is first, "younger than a minute: the same drawing"
    clock[0] += 1
    assert cache.get(NOW + timedelta(seconds=60)) is first, "a minute old: shown while drawn again"
    cache.wait()
    again = cache.get(NOW + timedelta(seconds=61))
    assert again is not None
    assert again.read_at == NOW + timedelta(seconds=60), "the drawing started at a minute"
    assert again.charts[0].description.startswith("6 requests in progress")
