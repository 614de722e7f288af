"""Server-rendered SVG charts: no JavaScript, no chart library, readable without colour.

Each chart is an `<svg role="img">` with a title and a description; the page shows the
numbers behind it in a table one click away (`<details>`), so screen readers and people
who want the figures get them too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

PALETTE = ("#1f5fa8", "#c2410c", "#15803d", "#7c3aed", "#a16207", "#be123c")
WIDTH, HEIGHT = 640, 220
LEFT, BOTTOM, TOP, RIGHT = 48, 28, 12, 8


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[int | float]


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1
    magnitude = 10 ** (len(str(int(value))) - 1)
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return 10 * magnitude


def _legend(series: Sequence[Series]) -> str:
    items = []
    x = LEFT
    for i, s in enumerate(series):
        colour = PALETTE[i % len(PALETTE)]
        items.append(
            f'<rect x="{x}" y="2" width="10" height="10" fill="{colour}"></rect>'
            f'<text x="{x + 14}" y="11" font-size="11">{escape(s.name)}</text>'
        )
        x += 20 + 7 * len(s.name)
    return "".join(items)


def _axes(top: float, labels: Sequence[str]) -> str:
    plot_h = HEIGHT - TOP - BOTTOM - 14
    parts = []
    for fraction in (0, 0.5, 1):
        y = TOP + 14 + plot_h * (1 - fraction)
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="#ccc" stroke-width="1"></line>'
            f'<text x="{LEFT - 4}" y="{y + 4:.1f}" font-size="10" text-anchor="end">'
            f"{_short(top * fraction)}</text>"
        )
    if labels:
        step = max(1, len(labels) // 6)
        slot = (WIDTH - LEFT - RIGHT) / len(labels)
        for i in range(0, len(labels), step):
            x = LEFT + slot * (i + 0.5)
            parts.append(
                f'<text x="{x:.1f}" y="{HEIGHT - 8}" font-size="10" text-anchor="middle">'
                f"{escape(labels[i])}</text>"
            )
    return "".join(parts)


def _short(value: float) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:.1f}M"
    if value >= 10_000:
        return f"{value / 1000:.0f}k"
    return f"{value:,.0f}" if value >= 10 or value == int(value) else f"{value:g}"


def _frame(title: str, description: str, body: str) -> Markup:
    return Markup(
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}" preserveAspectRatio="xMidYMid meet">'
        f"<title>{escape(title)}</title><desc>{escape(description)}</desc>{body}</svg>"
    )


def bars(title: str, labels: Sequence[str], series: Sequence[Series]) -> Markup:
    """Grouped bars, one group per label."""
    top = _nice_max(max((max(s.values, default=0) for s in series), default=0))
    plot_h = HEIGHT - TOP - BOTTOM - 14
    slot = (WIDTH - LEFT - RIGHT) / max(1, len(labels))
    bar_w = max(1.0, slot * 0.8 / max(1, len(series)))
    parts = [_axes(top, labels), _legend(series)]
    for si, s in enumerate(series):
        colour = PALETTE[si % len(PALETTE)]
        for i, value in enumerate(s.values):
            h = plot_h * (value / top) if top else 0
            x = LEFT + slot * i + slot * 0.1 + bar_w * si
            y = TOP + 14 + plot_h - h
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                f'fill="{colour}"><title>{escape(labels[i])} {escape(s.name)}: '
                f"{value:,}</title></rect>"
            )
    description = "; ".join(f"{s.name}: total {sum(s.values):,}" for s in series)
    return _frame(title, description, "".join(parts))


def lines(title: str, labels: Sequence[str], series: Sequence[Series]) -> Markup:
    top = _nice_max(max((max(s.values, default=0) for s in series), default=0))
    plot_h = HEIGHT - TOP - BOTTOM - 14
    slot = (WIDTH - LEFT - RIGHT) / max(1, len(labels))
    parts = [_axes(top, labels), _legend(series)]
    for si, s in enumerate(series):
        colour = PALETTE[si % len(PALETTE)]
        points = " ".join(
            f"{LEFT + slot * (i + 0.5):.1f},{TOP + 14 + plot_h * (1 - (v / top if top else 0)):.1f}"
            for i, v in enumerate(s.values)
        )
        dash = ' stroke-dasharray="5 3"' if si % 2 else ""
        parts.append(
            f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2"{dash}>'
            "</polyline>"
        )
    description = "; ".join(f"{s.name}: total {sum(s.values):,}" for s in series)
    return _frame(title, description, "".join(parts))


def hbars(title: str, items: Sequence[tuple[str, int]]) -> Markup:
    """Horizontal bars for a breakdown (members by tier, by channel)."""
    top = max((v for _, v in items), default=0) or 1
    row = 26
    height = max(row * len(items) + 8, 40)
    parts = []
    for i, (label, value) in enumerate(items):
        y = 4 + i * row
        w = (WIDTH - 200) * value / top
        parts.append(
            f'<text x="0" y="{y + 16}" font-size="12">{escape(label)}</text>'
            f'<rect x="120" y="{y + 4}" width="{w:.1f}" height="16" '
            f'fill="{PALETTE[i % len(PALETTE)]}"></rect>'
            f'<text x="{124 + w:.1f}" y="{y + 16}" font-size="12">{value:,}</text>'
        )
    description = "; ".join(f"{label}: {value:,}" for label, value in items)
    return Markup(
        f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" role="img" '
        f'aria-label="{escape(title)}"><title>{escape(title)}</title>'
        f"<desc>{escape(description)}</desc>{''.join(parts)}</svg>"
    )


def interval(title: str, conversion: dict) -> Markup:  # type: ignore[type-arg]
    """Recipients' and the control group's conversion, and the lift with its interval, on
    one percentage axis (the interval as a bar around the lift's point)."""
    recipients = float(conversion.get("recipients_rate") or 0) * 100
    control = float(conversion.get("control_rate") or 0) * 100
    lift = float(conversion.get("lift") or 0) * 100
    found = conversion.get("interval") or {}
    low = float(found.get("low", lift / 100)) * 100 if found else lift
    high = float(found.get("high", lift / 100)) * 100 if found else lift
    values = [recipients, control, lift, low, high, 0.0]
    left, right = min(values), max(values)
    span = (right - left) or 1.0
    left, right = left - span * 0.1, right + span * 0.1

    def x(value: float) -> float:
        return 140 + (WIDTH - 160) * (value - left) / (right - left)

    from flask_babel import gettext

    rows = [
        (gettext("recipients"), recipients, None),
        (gettext("control group"), control, None),
        (gettext("lift"), lift, (low, high)),
    ]
    parts = [
        f'<line x1="{x(0):.1f}" x2="{x(0):.1f}" y1="4" y2="100" stroke="#999" '
        'stroke-dasharray="3 3"></line>'
    ]
    for i, (label, value, bounds) in enumerate(rows):
        y = 20 + i * 30
        parts.append(f'<text x="0" y="{y + 4}" font-size="12">{escape(label)}</text>')
        if bounds is not None:
            parts.append(
                f'<line x1="{x(bounds[0]):.1f}" x2="{x(bounds[1]):.1f}" y1="{y}" y2="{y}" '
                f'stroke="{PALETTE[1]}" stroke-width="6"></line>'
            )
        parts.append(
            f'<circle cx="{x(value):.1f}" cy="{y}" r="5" fill="{PALETTE[0]}"></circle>'
            f'<text x="{x(value) + 8:.1f}" y="{y - 8}" font-size="11">{value:.2f} %</text>'
        )
    description = (
        f"recipients {recipients:.2f} %, control {control:.2f} %, lift {lift:.2f} points "
        f"(interval {low:.2f} to {high:.2f})"
    )
    return Markup(
        f'<svg class="chart" viewBox="0 0 {WIDTH} 110" role="img" aria-label="{escape(title)}">'
        f"<title>{escape(title)}</title><desc>{escape(description)}</desc>{''.join(parts)}</svg>"
    )
