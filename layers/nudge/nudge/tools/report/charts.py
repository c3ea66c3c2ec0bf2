"""The report's SVG charts, drawn here with no script: the colours, the SVG pieces, horizontal
(stacked) bars and the forest plot of lift. Every chart is WIDTH wide; CSS scales it to the page.

Tooltips are SVG <title> elements, which browsers show natively, so no JavaScript is needed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from nudge.domain.lift import LiftRow
from nudge.tools.report.markup import esc, pp

# Okabe-Ito: stays distinguishable under the common colour-vision deficiencies. Segments take
# the colours in file order, so a segment keeps its colour in every chart.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#999999")
STATUS_COLORS = {
    "sent": "#009E73",
    "held out": "#56B4E9",
    "deferred": "#E69F00",
    "cancelled": "#BBBBBB",
    "failed": "#D55E00",
    "suppressed": "#CC79A7",
}
VERDICT_COLORS = {"works": "#1a7f37", "hurts": "#c62828"}
GREY = "#6b7280"
WIDTH = 760  # every chart's viewBox width; CSS scales the SVG to the page


def coord(value: float) -> str:
    """An SVG coordinate: one decimal is finer than a pixel and keeps the file small."""
    return f"{value:.1f}"


def clip(text: str, size: int) -> str:
    # SVG text does not wrap: long names are cut and shown whole in the tooltip.
    return text if len(text) <= size else text[: size - 1] + "…"


def svg(height: float, label: str, body: str) -> str:
    return (
        f'<svg class="chart" viewBox="0 0 {WIDTH} {coord(height)}" role="img" aria-label="{esc(label)}">'
        f"{body}</svg>"
    )


def svg_text(x: float, y: float, text: str, anchor: str = "start", cls: str = "", tip: str = "") -> str:
    klass = f' class="{cls}"' if cls else ""
    title = f"<title>{esc(tip)}</title>" if tip else ""
    return f'<text x="{coord(x)}" y="{coord(y)}" text-anchor="{anchor}"{klass}>{title}{esc(text)}</text>'


def svg_rect(x: float, y: float, w: float, h: float, color: str, tip: str) -> str:
    return (
        f'<rect x="{coord(x)}" y="{coord(y)}" width="{coord(w)}" height="{coord(h)}" fill="{color}">'
        f"<title>{esc(tip)}</title></rect>"
    )


def axis_ticks(top: float) -> list[float]:
    """0 up to a round value >= top in at most 5 round steps (1, 2 or 5 times a power of 10)."""
    if top <= 0:
        return [0.0, 1.0]
    step = 10.0 ** math.floor(math.log10(top / 5))
    for multiple in (1, 2, 5, 10):
        if top / (step * multiple) <= 5:
            step *= multiple
            break
    step = max(step, 1.0)  # the axis counts users: no fractional ticks
    return [i * step for i in range(math.ceil(top / step) + 1)]


@dataclass(frozen=True)
class Bar:
    label: str
    parts: list[tuple[float, str, str]]  # (value, colour, tooltip), stacked left to right
    note: str = ""  # written right of the bar


def hbars(bars: Sequence[Bar], top: float, label: str, marker: tuple[float, str] | None = None) -> str:
    """Horizontal (stacked) bars on one scale, with an optional vertical reference line."""
    left, right, row = 190, 170, 28
    span = WIDTH - left - right
    top = top if top > 0 else 1.0
    pad = 24 if marker else 6
    height = pad + row * len(bars) + 6
    out: list[str] = []
    for i, bar in enumerate(bars):
        y = pad + i * row
        out.append(svg_text(left - 8, y + 18, clip(bar.label, 28), "end", tip=bar.label))
        x = float(left)
        for value, color, tip in bar.parts:
            width = span * max(value, 0.0) / top
            if width > 0:
                out.append(svg_rect(x, y + 6, width, 16, color, tip))
            x += width
        out.append(svg_text(x + 6, y + 18, bar.note, cls="axis"))
    if marker is not None:
        value, text = marker
        mx = left + span * min(max(value / top, 0.0), 1.0)
        out.append(
            f'<line x1="{coord(mx)}" y1="{pad - 4}" x2="{coord(mx)}" y2="{coord(height - 2)}" '
            f'stroke="#111827" stroke-width="1.5" stroke-dasharray="4 3"/>'
        )
        out.append(svg_text(mx, pad - 8, text, "middle"))
    return svg(height, label, "".join(out))


def forest(rows: Sequence[LiftRow]) -> str:
    """Difference in goal rate with its 95% interval per rule, around a zero line."""
    trusted = [r for r in rows if not r.warning and r.interval is not None]
    values = [0.0, *(r.difference for r in rows if r.difference is not None)]
    values += [v for r in trusted if r.interval is not None for v in r.interval]
    lo, hi = min(values), max(values)
    pad = max((hi - lo) * 0.1, 0.02)  # an all-zero chart still needs a width
    lo, hi = lo - pad, hi + pad
    left, right, row, top = 190, 170, 28, 8
    span = WIDTH - left - right
    height = top + row * len(rows) + 44

    def x(value: float) -> float:
        return left + span * (value - lo) / (hi - lo)

    out = [
        f'<line x1="{coord(x(0))}" y1="{top}" x2="{coord(x(0))}" y2="{coord(height - 36)}" stroke="#9ca3af" '
        'stroke-dasharray="4 3"/>'
    ]
    for i, r in enumerate(rows):
        y = top + i * row + 14
        color = VERDICT_COLORS.get(r.verdict, GREY)
        out.append(svg_text(left - 8, y + 4, clip(r.rule, 28), "end", tip=r.rule))
        if r.difference is not None and r.interval is not None and not r.warning:
            a, b = x(r.interval[0]), x(r.interval[1])
            out.append(
                f'<line x1="{coord(a)}" y1="{y}" x2="{coord(b)}" y2="{y}" stroke="{color}" stroke-width="2"/>'
            )
            for cap in (a, b):
                out.append(
                    f'<line x1="{coord(cap)}" y1="{y - 5}" x2="{coord(cap)}" y2="{y + 5}" stroke="{color}"/>'
                )
            out.append(f'<circle cx="{coord(x(r.difference))}" cy="{y}" r="5" fill="{color}"/>')
        elif r.difference is not None:
            # Too few users for an interval: show where it landed, hollow, without a whisker.
            out.append(f'<circle cx="{coord(x(r.difference))}" cy="{y}" r="5" fill="none" stroke="{GREY}"/>')
        out.append(svg_text(WIDTH - right + 8, y + 4, r.verdict, cls="axis"))
    out.append(svg_text(x(0), height - 22, "0", "middle", "axis"))
    for value, anchor in ((lo, "start"), (hi, "end")):
        if abs(x(value) - x(0)) > 60:  # a range end right next to zero would overprint it
            out.append(svg_text(x(value), height - 22, pp(value), anchor, "axis"))
    out.append(svg_text(x(0) - 8, height - 4, "← held out did better", "end", "axis"))
    out.append(svg_text(x(0) + 8, height - 4, "sent did better →", "start", "axis"))
    return svg(height, "Difference in goal rate, sent vs held out", "".join(out))
