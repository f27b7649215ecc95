"""The officer's overview as charts, drawn on the server as SVG by matplotlib and inlined in the page.

Why matplotlib (its SVG backend) rather than pygal: its SVG is plain drawing, no script, while pygal
puts an inline `<script>` in every chart (and by default loads its tooltips from a CDN), which the
desk's policy refuses; and matplotlib is among the best-kept libraries there are. Its `style`
attributes are turned into presentation attributes (see `inline_svg`). Each chart has a title, a
description that says what it shows in words (the SVG's `<title>`/`<desc>`), and its figures as a
table the page can show. Charts carry no personal data: states, system ids, dates and counts.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import matplotlib
from markupsafe import Markup
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from matplotlib.typing import RcKeyType

from pipeline.desk.inline_svg import inline_svg
from pipeline.ledger.overview import (
    COMPLETION_WEEKS,
    DURATION_STEP,
    CompletionTime,
    DaysLeft,
    HoldsEnding,
    Overview,
    WeeklyRequests,
)
from pipeline.ledger.views import LaneFigures

INK, GRID = "#1d2330", "#d0d5dd"
RED, ORANGE, BLUE, GREY = "#d55e00", "#e69f00", "#0072b2", "#8a94a6"
# Okabe-Ito colours: told apart with the common colour-vision deficiencies
STATE_COLOURS = {"completed": "#009e73", "completed_with_holds": BLUE, "refused": GREY,
                 "needs_attention": RED, "in_progress": ORANGE}
SPARE_COLOURS = ("#cc79a7", "#56b4e9", "#f0e442", "#000000")
DRAWING: dict[RcKeyType, Any] = {
    "svg.fonttype": "none",  # text stays text: readable, searchable, scaled by the browser
    "svg.hashsalt": "erasure-desk",  # the same figures draw the same SVG
    "text.parse_math": False,  # a `$` in a system id is a dollar sign
    "font.family": "sans-serif", "font.sans-serif": ["DejaVu Sans"], "font.size": 9,
    "text.color": INK, "axes.labelcolor": INK, "xtick.color": INK, "ytick.color": INK,
    "axes.edgecolor": GREY, "axes.spines.top": False, "axes.spines.right": False,
    "axes.grid": True, "grid.color": GRID, "axes.axisbelow": True,
}
SIZE_IN = (6.4, 3.0)
RESOLUTION_PERCENT = round((DURATION_STEP - 1) * 100)  # completion times: how far above the exact one
_DRAWING_LOCK = threading.Lock()  # rc_context changes matplotlib's settings for the whole process


@dataclass(frozen=True)
class Chart:
    """One chart: `svg` is None when there is nothing to draw, and `description` says so."""

    key: str
    title: str
    description: str
    svg: Markup | None
    columns: list[str]
    rows: list[list[str]]


def state_label(state: str) -> str:
    return state.replace("_", " ")


def day(moment: datetime) -> str:
    return f"{moment.day} {moment:%b %Y}"


def duration(seconds: float) -> str:
    for unit_s, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= unit_s:
            return f"{seconds / unit_s:.1f} {unit}".replace(".0 ", " ")
    return f"{seconds:.0f} s"


@contextmanager
def drawing() -> Iterator[Figure]:
    with _DRAWING_LOCK, matplotlib.rc_context(DRAWING):
        yield Figure(figsize=SIZE_IN, layout="constrained")


def to_svg(figure: Figure, key: str, title: str, description: str) -> Markup:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    # inline_svg escapes every text it writes: the markup is the serializer's
    return Markup(inline_svg(buffer.getvalue(), key, title, description))


def bar_values(axes: Axes, containers: Sequence[Any]) -> None:
    for container in containers:
        axes.bar_label(container, labels=[f"{v:g}" if v else "" for v in container.datavalues], padding=2)


def ordered_states(series: dict[str, list[int]]) -> list[str]:
    known = [s for s in STATE_COLOURS if s in series]
    return known + sorted(set(series) - set(known))


def weekly_chart(weekly: WeeklyRequests, sweeps: bool) -> Chart:
    key, noun = (("sweeps-per-week", "retention sweeps") if sweeps
                 else ("requests-per-week", "people's requests"))
    title = f"{noun.capitalize()} per week, by state now"
    series = weekly.sweeps if sweeps else weekly.people
    states = ordered_states(series)
    first, end = weekly.week_starts[0], weekly.week_starts[-1] + timedelta(days=6)
    span = f"the {len(weekly.week_starts)} weeks from {day(first)} to {day(end)}"
    totals = [sum(series[s][i] for s in states) for i in range(len(weekly.week_starts))]
    columns = ["Week of", *map(state_label, states), "Total"]
    rows = [[day(start), *(str(series[s][i]) for s in states), str(totals[i])]
            for i, start in enumerate(weekly.week_starts)]
    if not sum(totals):
        return Chart(key, title, f"No {noun} received in {span}.", None, columns, rows)
    busiest = max(range(len(totals)), key=lambda i: totals[i])
    description = (f"{sum(totals)} {noun} received in {span}, by the state each is in now: "
                   + ", ".join(f"{sum(series[s])} {state_label(s)}" for s in states)
                   + f". The busiest week began {day(weekly.week_starts[busiest])} ({totals[busiest]}).")
    spare = iter(SPARE_COLOURS * 4)
    with drawing() as figure:
        axes = figure.subplots()
        bottom = [0] * len(totals)
        for state in states:
            axes.bar(range(len(totals)), series[state], bottom=bottom, label=state_label(state),
                     color=STATE_COLOURS.get(state) or next(spare), width=0.8)
            bottom = [b + c for b, c in zip(bottom, series[state], strict=True)]
        ticks = list(range(len(totals) - 1, -1, -4))[::-1]
        axes.set_xticks(ticks, [f"{weekly.week_starts[i].day} {weekly.week_starts[i]:%b}" for i in ticks])
        axes.yaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_ylabel("requests")
        figure.legend(loc="outside upper left", frameon=False, ncols=min(len(states), 5))
        axes.grid(axis="x", visible=False)
        return Chart(key, title, description, to_svg(figure, key, title, description), columns, rows)


def days_left_label(slot: DaysLeft) -> str:
    if slot.low_days is None:
        return "overdue"
    if slot.high_days is None:
        return f"{slot.low_days} days or more"
    if slot.low_days == 0:
        return f"under {slot.high_days} days"
    return f"{slot.low_days} to {slot.high_days} days"


def days_left_chart(slots: list[DaysLeft]) -> Chart:
    key, title = "days-left", "Open requests by days left before their deadline"
    labels = [days_left_label(s) for s in slots]
    rows = [[label, str(s.requests)] for label, s in zip(labels, slots, strict=True)]
    total = sum(s.requests for s in slots)
    if not total:
        return Chart(key, title, "No request is in progress.", None, ["Days left", "Requests"], rows)
    description = (f"{total} requests in progress, by days left before their deadline: "
                   + ", ".join(f"{label} {s.requests}" for label, s in zip(labels, slots, strict=True)) + ".")
    colours = [RED if s.low_days is None else ORANGE if (s.high_days or 99) <= 7 else BLUE for s in slots]
    with drawing() as figure:
        axes = figure.subplots()
        ticks = [label.replace(" days", "\ndays") for label in labels]
        bars = axes.bar(ticks, [s.requests for s in slots], color=colours, width=0.7)
        bar_values(axes, [bars])
        axes.yaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_ylabel("requests in progress")
        axes.grid(axis="x", visible=False)
        return Chart(key, title, description, to_svg(figure, key, title, description),
                     ["Days left", "Requests"], rows)


def grouped_bars(axes: Axes, names: list[str], series: list[tuple[str, list[float], str]],
                 labels: list[list[str]]) -> None:
    """Horizontal bars, one group per name (top to bottom), one bar per series, each with its label."""
    height = 0.8 / len(series)
    for index, (label, values, colour) in enumerate(series):
        positions = [row - 0.4 + height * (index + 0.5) for row in range(len(names))]
        bars = axes.barh(positions, values, height=height, label=label, color=colour)
        axes.bar_label(bars, labels=labels[index], padding=2)
    axes.set_yticks(range(len(names)), names)
    axes.invert_yaxis()
    axes.figure.legend(loc="outside upper left", frameon=False, ncols=len(series))
    axes.grid(axis="y", visible=False)
    axes.margins(x=0.15)


def completion_chart(times: list[CompletionTime], weeks: int) -> Chart:
    key, title = "time-to-completion", "Time to completion per system (median and 95th percentile)"
    columns = ["System", "Answers", "Median", "95th percentile"]
    rows = [[t.system, str(t.answered), duration(t.median_s), duration(t.p95_s)] for t in times]
    if not times:
        return Chart(key, title, f"No system answered in the last {weeks} weeks.", None, columns, rows)
    description = (f"Time from a request's plan to each system's answer (erased, not found or held), over "
                   f"the answers of the last {weeks} weeks, to within {RESOLUTION_PERCENT}% (answers are "
                   f"counted in buckets {RESOLUTION_PERCENT}% wide, and each figure is the longest answer "
                   f"in its percentile's bucket): "
                   + "; ".join(f"{t.system} median {duration(t.median_s)}, 95th percentile "
                               f"{duration(t.p95_s)} ({t.answered} answers)" for t in times) + ".")
    scale_s, unit = next(((s, u) for s, u in ((86400, "days"), (3600, "hours"), (60, "minutes"))
                          if max(t.p95_s for t in times) >= 2 * s), (1, "seconds"))
    with drawing() as figure:
        figure.set_figheight(max(SIZE_IN[1], 1.2 + 0.45 * len(times)))
        axes = figure.subplots()
        grouped_bars(axes, [t.system for t in times], [
            ("median", [t.median_s / scale_s for t in times], BLUE),
            ("95th percentile", [t.p95_s / scale_s for t in times], ORANGE)],
            [[duration(t.median_s) for t in times], [duration(t.p95_s) for t in times]])
        axes.set_xlabel(unit)
        return Chart(key, title, description, to_svg(figure, key, title, description), columns, rows)


def holds_chart(holds: HoldsEnding) -> Chart:
    key, title = "holds-ending", "Legal holds ending per month"
    labels = ["ended, release due", *(f"{m:%b %Y}" for m in holds.month_starts)]
    counts = [holds.ended, *holds.per_month]
    rows = [[label, str(count)] for label, count in zip(labels, counts, strict=True)]
    months = len(holds.month_starts)
    if not sum(counts):
        return Chart(key, title, f"No legal hold in force ends in the next {months} months.", None,
                     ["Month", "Holds ending"], rows)
    description = (f"Legal holds in force: {holds.ended} whose end has passed (their release is due), "
                   f"{sum(holds.per_month)} ending in the next {months} months"
                   + "".join(f"; {label} {count}" for label, count in zip(labels[1:], counts[1:], strict=True)
                             if count) + ".")
    with drawing() as figure:
        axes = figure.subplots()
        ticks = ["ended", *(f"{m:%b}\n{m:%Y}" if i == 0 or m.month == 1 else f"{m:%b}"
                            for i, m in enumerate(holds.month_starts))]
        bars = axes.bar(ticks, counts, color=[RED, *[BLUE] * months], width=0.7)
        bar_values(axes, [bars])
        axes.yaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_ylabel("holds")
        axes.grid(axis="x", visible=False)
        return Chart(key, title, description, to_svg(figure, key, title, description),
                     ["Month", "Holds ending"], rows)


def lanes_chart(lanes: list[LaneFigures]) -> Chart:
    key, title = "failing-systems", "Systems failing or silent now"
    columns = ["System", "Failed", "Retrying", "Silent past expected answer"]
    counts = [(lane.system, lane.by_status.get("failed", 0), lane.by_status.get("retrying", 0),
               lane.overdue) for lane in lanes]
    troubled = [t for t in counts if any(t[1:])]
    rows = [[system, *map(str, figures)] for system, *figures in troubled]
    if not troubled:
        return Chart(key, title, "No system is failing, retrying or silent.", None, columns, rows)
    description = ("Systems with rows failed, retrying, or silent past the time they were expected to "
                   "answer: " + "; ".join(f"{s} {f} failed, {r} retrying, {q} silent"
                                          for s, f, r, q in troubled) + ".")
    with drawing() as figure:
        figure.set_figheight(max(SIZE_IN[1], 1.2 + 0.5 * len(troubled)))
        axes = figure.subplots()
        series = [("failed", RED, 1), ("retrying", ORANGE, 2), ("silent", GREY, 3)]
        grouped_bars(axes, [t[0] for t in troubled],
                     [(label, [float(t[i]) for t in troubled], colour) for label, colour, i in series],
                     [[f"{t[i]}" if t[i] else "" for t in troubled] for _, _, i in series])
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_xlabel("rows")
        return Chart(key, title, description, to_svg(figure, key, title, description), columns, rows)


def overview_charts(overview: Overview) -> list[Chart]:
    """The home page's charts, what needs acting on first."""
    return [days_left_chart(overview.days_left), lanes_chart(overview.lanes),
            weekly_chart(overview.weekly, sweeps=False), weekly_chart(overview.weekly, sweeps=True),
            completion_chart(overview.completion, COMPLETION_WEEKS), holds_chart(overview.holds)]
