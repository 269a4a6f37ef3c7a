"""The cost-per-day chart: stacked bars, one colour per model, as inline SVG.

This module only does the geometry, over the per-day sums the database returned (a
few hundred numbers at most); templates/conversations/costs.html draws it. No chart
library, no script: the page is a picture as soon as it loads. The bars themselves are
written here as SVG (Chart.rects), being hundreds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from conversations.costs.ledger import Row, day_label
from conversations.costs.money import format_money

# Distinguishable in light and dark mode, and for the common colour-vision deficiencies
# (Okabe–Ito, reordered); models beyond eight reuse them.
PALETTE = ["#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#f0e442", "#7f7f7f"]

WIDTH, HEIGHT = 760, 260
LEFT, RIGHT, TOP, BOTTOM = 72, 8, 10, 26


@dataclass
class Segment:
    x: float
    y: float
    width: float
    height: float
    color: str
    title: str


@dataclass
class Tick:
    position: float
    label: str


@dataclass
class Series:
    label: str
    color: str


@dataclass
class Chart:
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    top: int = TOP
    plot_width: int = WIDTH - LEFT - RIGHT
    plot_height: int = HEIGHT - TOP - BOTTOM
    segments: list[Segment] = field(default_factory=list)
    y_ticks: list[Tick] = field(default_factory=list)
    x_ticks: list[Tick] = field(default_factory=list)
    series: list[Series] = field(default_factory=list)
    days: int = 0
    empty: bool = True

    @property
    def bottom(self) -> int:
        return self.top + self.plot_height

    @property
    def right(self) -> int:
        return self.left + self.plot_width

    @property
    def center(self) -> int:
        return self.left + self.plot_width // 2

    def rects(self) -> SafeString:
        """The segments as SVG, each with its tooltip. Written here rather than in the
        template: a 90-day chart has some 450, and their 2,700 template variables took a
        third of the dashboard's time. Only the tooltip is text; the rest are numbers
        and PALETTE's colours."""
        return mark_safe(
            "\n".join(
                f'<rect x="{s.x:.2f}" y="{s.y:.2f}" width="{s.width:.2f}" height="{s.height:.2f}" fill="{s.color}">'
                f"<title>{escape(s.title)}</title></rect>"
                for s in self.segments
            )
        )


NICE_STEPS = [Decimal(s) for s in ("1", "1.2", "1.6", "2", "2.4", "3", "4", "5", "6", "8")]


def nice_ceiling(value: Decimal) -> Decimal:
    """The smallest round number (1, 1.2 ... 8 × 10ⁿ) at or above `value`.

    Each divides by 4 into exact, short axis labels ($0.3, $0.6, $0.9, $1.2).
    """
    if value <= 0:
        return Decimal(1)
    exponent = value.adjusted()
    for _ in range(2):
        for step in NICE_STEPS:
            candidate = Decimal(step).scaleb(exponent)
            if candidate >= value:
                return candidate
        exponent += 1
    return Decimal(10).scaleb(exponent)


def cost_per_day(days: list[date], rows: list[Row], labels: dict[tuple[str, str], str]) -> Chart:
    """`rows` are the ledger's per-day sums: {day, service_name, model_name, cost}."""
    chart = Chart(days=len(days))
    if not days:
        return chart
    models: set[tuple[str, str]] = {(r["service_name"], r["model_name"]) for r in rows}
    keys = sorted(models, key=lambda k: labels.get(k, k[1]).casefold())
    colors = {key: PALETTE[i % len(PALETTE)] for i, key in enumerate(keys)}
    chart.series = [Series(labels.get(key, key[1]), colors[key]) for key in keys]

    per_day: dict[date, list[tuple[tuple[str, str], Decimal]]] = {}
    for row in rows:
        if row["cost"]:
            per_day.setdefault(row["day"], []).append(((row["service_name"], row["model_name"]), row["cost"]))
    highest = max((sum((cost for _, cost in day), Decimal(0)) for day in per_day.values()), default=Decimal(0))
    chart.empty = highest == 0
    top = nice_ceiling(highest)

    for i in range(5):
        amount = top * i / 4
        chart.y_ticks.append(Tick(chart.bottom - chart.plot_height * i / 4, format_money(amount)))

    slot = chart.plot_width / len(days)
    bar = max(slot * 0.8, 1)
    label_every = max(1, round(len(days) / 10))
    for index, day in enumerate(days):
        x = chart.left + index * slot + (slot - bar) / 2
        if index % label_every == 0:
            chart.x_ticks.append(Tick(chart.left + index * slot + slot / 2, f"{day.day} {day:%b}"))
        y = float(chart.bottom)
        for key, cost in sorted(per_day.get(day, []), key=lambda item: keys.index(item[0])):
            height = float(cost / top) * chart.plot_height
            y -= height
            label = labels.get(key, key[1])
            title = f"{day_label(day)} · {label}: {format_money(cost)}"
            chart.segments.append(Segment(x, y, bar, height, colors[key], title))
    return chart
