"""The report as ONE self-contained HTML file: inline CSS and SVG charts drawn here, with no
scripts, fonts, images or links to fetch, so it can be mailed around and opened offline.

Every name that comes from data (segments, rules, features, reasons, the source) passes through
`_e` before it lands in text or an attribute: a segment id is whatever the rules file says.
Tooltips are SVG <title> elements, which browsers show natively, so no JavaScript is needed.
"""

from __future__ import annotations

import html
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from nudge.domain.lift import LiftRow
from nudge.domain.report_model import ReportData, RuleMessages

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

CSS = """
*{box-sizing:border-box}
body{margin:0;background:#f6f7f9;color:#1f2937;
 font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif}
header{background:#1f2937;color:#fff;padding:24px 32px}
header h1{margin:0;font-size:26px}
header p{margin:4px 0 0;color:#cbd5e1}
nav{display:flex;flex-wrap:wrap;gap:6px 16px;padding:10px 32px;background:#fff;
 border-bottom:1px solid #e5e7eb;position:sticky;top:0}
nav a{color:#0072B2;text-decoration:none;font-size:14px}
main{max-width:1100px;margin:0 auto;padding:16px}
section{background:#fff;border-radius:10px;box-shadow:0 1px 3px rgba(0,0,0,.08);
 padding:20px 24px;margin:16px 0;overflow-x:auto}
h2{margin:0 0 4px;font-size:20px}
.lead{margin:0 0 12px;color:#4b5563}
.tiles{display:grid;grid-template-columns:repeat(auto-fit,minmax(150px,1fr));gap:12px}
.tile{background:#f3f4f6;border-radius:8px;padding:12px 14px}
.tile b{display:block;font-size:26px;line-height:1.2}
.tile span{color:#4b5563;font-size:13px}
.tile.wide{grid-column:span 2}
.tile.wide b{font-size:15px;font-weight:600}
.chart{width:100%;height:auto;display:block;margin:8px 0}
.chart text{font-size:12px;fill:#374151}
.chart .axis{fill:#6b7280}
.chart .grid{stroke:#e5e7eb}
table{border-collapse:collapse;width:100%;margin:8px 0;font-size:14px}
th,td{padding:6px 8px;border-bottom:1px solid #e5e7eb;text-align:left;vertical-align:top}
th{background:#f9fafb;font-weight:600}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.legend{display:flex;flex-wrap:wrap;gap:4px 16px;list-style:none;padding:0;margin:4px 0;font-size:13px}
.sw{display:inline-block;width:12px;height:12px;border-radius:2px;margin-right:6px;vertical-align:-1px}
.empty{color:#6b7280;font-style:italic}
.verdict{font-weight:600}
.warn{color:#92400e;font-size:13px}
.note{color:#4b5563;font-size:13px}
.heat td.num{font-weight:600}
.lift{font-size:13px}
.nowrap{white-space:nowrap}
.why{min-width:11em;text-align:left}
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _n(value: float) -> str:
    return f"{value:,.0f}"


def _f(value: float) -> str:
    """An SVG coordinate: one decimal is finer than a pixel and keeps the file small."""
    return f"{value:.1f}"


def _trim(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _share(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def _pct(share: float | None) -> str:
    if share is None:
        return "—"
    pct = share * 100
    # A decimal only where it carries information: 4.5% vs 4%, but 45% rather than 45.3%.
    return (_trim(pct) if abs(pct) < 10 else f"{pct:.0f}") + "%"


def _pp(value: float) -> str:
    return f"{value * 100:+.1f} pp"


def _duration(hours: float | None) -> str:
    if hours is None:
        return "—"
    if hours * 60 < 1:
        return "under a minute"
    if hours < 1:
        return f"{round(hours * 60)} min"
    if hours < 48:
        return f"{_trim(hours)} h"
    return f"{_trim(hours / 24)} days"


def _readable(name: str) -> str:
    """cap_email_day -> cap email day: marketers read words, not identifiers."""
    return name.replace("_", " ").strip() or "unknown"


def _clip(text: str, size: int) -> str:
    # SVG text does not wrap: long names are cut and shown whole in the tooltip.
    return text if len(text) <= size else text[: size - 1] + "…"


def _nothing(what: str) -> str:
    return f'<p class="empty">Nothing yet: {_e(what)}.</p>'


def _section(ident: str, title: str, lead: str, body: str) -> str:
    lead_html = f'<p class="lead">{_e(lead)}</p>' if lead else ""
    return f'<section id="{ident}"><h2>{_e(title)}</h2>{lead_html}{body}</section>'


def _legend(items: Iterable[tuple[str, str]]) -> str:
    entries = "".join(
        f'<li><span class="sw" style="background:{color}"></span>{_e(name)}</li>' for name, color in items
    )
    return f'<ul class="legend">{entries}</ul>'


def _table(head: Sequence[str], rows: Iterable[Sequence[str]], numeric: range, cls: str = "") -> str:
    """Cells are HTML already (callers escape); the `numeric` columns align right."""

    def cell(tag: str, index: int, content: str) -> str:
        align = ' class="num"' if index in numeric else ""
        return f"<{tag}{align}>{content}</{tag}>"

    header = "".join(cell("th", i, _e(h)) for i, h in enumerate(head))
    body = "".join("<tr>" + "".join(cell("td", i, c) for i, c in enumerate(r)) + "</tr>" for r in rows)
    klass = f' class="{cls}"' if cls else ""
    return f"<table{klass}><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>"


def _svg(height: float, label: str, body: str) -> str:
    return (
        f'<svg class="chart" viewBox="0 0 {WIDTH} {_f(height)}" role="img" aria-label="{_e(label)}">'
        f"{body}</svg>"
    )


def _text(x: float, y: float, text: str, anchor: str = "start", cls: str = "", tip: str = "") -> str:
    klass = f' class="{cls}"' if cls else ""
    title = f"<title>{_e(tip)}</title>" if tip else ""
    return f'<text x="{_f(x)}" y="{_f(y)}" text-anchor="{anchor}"{klass}>{title}{_e(text)}</text>'


def _rect(x: float, y: float, w: float, h: float, color: str, tip: str) -> str:
    return (
        f'<rect x="{_f(x)}" y="{_f(y)}" width="{_f(w)}" height="{_f(h)}" fill="{color}">'
        f"<title>{_e(tip)}</title></rect>"
    )


def _ticks(top: float) -> list[float]:
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
class _Bar:
    label: str
    parts: list[tuple[float, str, str]]  # (value, colour, tooltip), stacked left to right
    note: str = ""  # written right of the bar


def _hbars(bars: Sequence[_Bar], top: float, label: str, marker: tuple[float, str] | None = None) -> str:
    """Horizontal (stacked) bars on one scale, with an optional vertical reference line."""
    left, right, row = 190, 170, 28
    span = WIDTH - left - right
    top = top if top > 0 else 1.0
    pad = 24 if marker else 6
    height = pad + row * len(bars) + 6
    out: list[str] = []
    for i, bar in enumerate(bars):
        y = pad + i * row
        out.append(_text(left - 8, y + 18, _clip(bar.label, 28), "end", tip=bar.label))
        x = float(left)
        for value, color, tip in bar.parts:
            width = span * max(value, 0.0) / top
            if width > 0:
                out.append(_rect(x, y + 6, width, 16, color, tip))
            x += width
        out.append(_text(x + 6, y + 18, bar.note, cls="axis"))
    if marker is not None:
        value, text = marker
        mx = left + span * min(max(value / top, 0.0), 1.0)
        out.append(
            f'<line x1="{_f(mx)}" y1="{pad - 4}" x2="{_f(mx)}" y2="{_f(height - 2)}" '
            f'stroke="#111827" stroke-width="1.5" stroke-dasharray="4 3"/>'
        )
        out.append(_text(mx, pad - 8, text, "middle"))
    return _svg(height, label, "".join(out))


def _segment_colors(data: ReportData) -> dict[str, str]:
    """Segment -> colour: file order first, then any segment only the data mentions."""
    names = [
        *data.segments,
        *(s for _, sizes in data.weekly_sizes for s in sizes),
        *(s for pair in data.flows for s in pair),
        *data.adoption,
        *(q.segment for q in data.quality),
    ]
    return {s: PALETTE[i % len(PALETTE)] for i, s in enumerate(dict.fromkeys(names))}


def _summary(data: ReportData) -> str:
    sent = sum(m.sent for m in data.messages)
    escalated = sum(b.escalated for b in data.escalations)
    when = data.generated_at.strftime("%d %b %Y, %H:%M %Z").strip()
    tiles = [
        ("users", _n(data.users), ""),
        ("accounts", _n(data.accounts), ""),
        ("messages sent", _n(sent), ""),
        ("accounts escalated to CS", _n(escalated), ""),
        ("generated at", when, " wide"),
        ("source", data.source or "not given", " wide"),
    ]
    body = "".join(f'<div class="tile{w}"><b>{_e(v)}</b><span>{_e(k)}</span></div>' for k, v, w in tiles)
    return _section("summary", "Summary", "", f'<div class="tiles">{body}</div>')


def _segments(data: ReportData, colors: dict[str, str]) -> str:
    title, lead = "Segments over time", "Users in each lifecycle segment at the end of every ISO week."
    weeks = data.weekly_sizes
    if not weeks:
        return _section("segments", title, lead, _nothing("no weeks of segment history"))
    left, right, top_pad, bottom, height = 60, 16, 14, 52, 300
    plot_w, plot_h = WIDTH - left - right, height - top_pad - bottom
    ticks = _ticks(max(sum(sizes.values()) for _, sizes in weeks))
    ymax = ticks[-1]
    out: list[str] = []
    for t in ticks:
        y = top_pad + plot_h * (1 - t / ymax)
        out.append(f'<line class="grid" x1="{left}" y1="{_f(y)}" x2="{WIDTH - right}" y2="{_f(y)}"/>')
        out.append(_text(left - 6, y + 4, _n(t), "end", "axis"))
    slot = plot_w / len(weeks)
    every = max(1, math.ceil(64 / slot))  # a week label needs ~64px: skip some rather than overlap
    for i, (week, sizes) in enumerate(weeks):
        x, base = left + slot * i + slot * 0.15, 0
        for segment, color in colors.items():
            count = sizes.get(segment, 0)
            if count <= 0:
                continue
            y = top_pad + plot_h * (1 - (base + count) / ymax)
            out.append(
                _rect(x, y, slot * 0.7, plot_h * count / ymax, color, f"{week} · {segment}: {count:,}")
            )
            base += count
        if i % every == 0:
            out.append(_text(left + slot * (i + 0.5), height - bottom + 18, week, "middle", "axis"))
    cy = top_pad + plot_h / 2
    out.append(
        f'<text x="16" y="{_f(cy)}" transform="rotate(-90 16 {_f(cy)})" text-anchor="middle">users</text>'
    )
    out.append(_text(left + plot_w / 2, height - 8, "ISO week", "middle"))
    used = [(s, c) for s, c in colors.items() if any(sizes.get(s) for _, sizes in weeks)]
    chart = _svg(height, "Segment sizes by week", "".join(out))
    return _section("segments", title, lead, _legend(used) + chart)


def _transitions(data: ReportData, colors: dict[str, str]) -> str:
    title, lead = "Moves between segments", "Users who changed segment from one week to the next."
    order = {s: i for i, s in enumerate(colors)}
    flows = sorted(
        ((a, b, n) for (a, b), n in data.flows.items() if n > 0), key=lambda f: (order[f[0]], order[f[1]])
    )
    if not flows:
        return _section("transitions", title, lead, _nothing("nobody has moved between segments"))
    sources: Counter[str] = Counter()
    targets: Counter[str] = Counter()
    for a, b, n in flows:
        sources[a] += n
        targets[b] += n
    total = sum(n for _, _, n in flows)
    gap, node_w, head = 12, 14, 28
    height = max(300, 28 * max(len(sources), len(targets)) + 100)  # room for every node's label
    usable = height - head - 10
    scale = min((usable - gap * (len(side) - 1)) / total for side in (sources, targets))

    def place(side: Counter[str]) -> dict[str, float]:
        # Nodes in segment order, centred vertically so a short column does not hang at the top.
        names = sorted(side, key=order.__getitem__)
        y = head + (usable - total * scale - gap * (len(names) - 1)) / 2
        tops: dict[str, float] = {}
        for name in names:
            tops[name] = y
            y += side[name] * scale + gap
        return tops

    src_y, dst_y = place(sources), place(targets)
    x0, x1 = 200.0, WIDTH - 200.0
    out = [_text(x0, 16, "from", "end", "axis"), _text(x1, 16, "to", "start", "axis")]
    out_at, in_at = dict(src_y), dict(dst_y)
    for a, b, n in flows:
        t, ya, yb = n * scale, out_at[a], in_at[b]
        out_at[a], in_at[b] = ya + t, yb + t
        mx = (x0 + x1) / 2
        d = (
            f"M{_f(x0)},{_f(ya)} C{_f(mx)},{_f(ya)} {_f(mx)},{_f(yb)} {_f(x1)},{_f(yb)} "
            f"L{_f(x1)},{_f(yb + t)} C{_f(mx)},{_f(yb + t)} {_f(mx)},{_f(ya + t)} {_f(x0)},{_f(ya + t)} Z"
        )
        out.append(
            f'<path d="{d}" fill="{colors[a]}" fill-opacity="0.45">'
            f"<title>{_e(f'{a} → {b}: {n:,} users')}</title></path>"
        )
    for side, tops, x, anchor, dx in (
        (sources, src_y, x0 - node_w, "end", -6),
        (targets, dst_y, x1, "start", 6),
    ):
        for name, y in tops.items():
            h = side[name] * scale
            out.append(_rect(x, y, node_w, h, colors[name], f"{name}: {side[name]:,}"))
            label_x = x + (node_w if dx > 0 else 0) + dx
            out.append(_text(label_x, y + h / 2 + 4, f"{_clip(name, 22)} · {side[name]:,}", anchor, tip=name))
    top_moves = sorted(flows, key=lambda f: -f[2])[:8]
    moves = ([f"{_e(a)} → {_e(b)}", _n(n)] for a, b, n in top_moves)
    table = _table(["from → to", "users"], moves, range(1, 2))
    return _section("transitions", title, lead, _svg(height, "Moves between segments", "".join(out)) + table)


def _funnel(data: ReportData) -> str:
    title, lead = "Onboarding funnel", "Users who reached each step (and every step before it)."
    first = data.funnel[0].users if data.funnel else 0
    if not first:
        return _section("funnel", title, lead, _nothing("nobody has started onboarding"))
    bars = [
        _Bar(
            _readable(s.name),
            [(s.users, PALETTE[0], f"{s.name}: {s.users:,} users")],
            f"{s.users:,} · {_pct(_share(s.users, first))}",
        )
        for s in data.funnel
    ]
    rows = (
        [
            _e(_readable(s.name)),
            _n(s.users),
            _pct(_share(s.users, first)),
            _duration(s.median_hours_from_previous),
        ]
        for s in data.funnel
    )
    table = _table(["step", "users", "% of first step", "median time from previous step"], rows, range(1, 4))
    return _section("funnel", title, lead, _hbars(bars, first, "Onboarding funnel") + table)


def _statuses(m: RuleMessages) -> list[tuple[str, int]]:
    return [
        ("sent", m.sent),
        ("held out", m.held_out),
        ("deferred", m.deferred),
        ("cancelled", m.cancelled),
        ("failed", m.failed),
        ("suppressed", sum(m.suppressed.values())),
    ]


def _messages(data: ReportData) -> str:
    title, lead = "Messages by rule", "What happened to each rule's decisions, per channel."
    if not data.messages:
        return _section("messages", title, lead, _nothing("no rule has decided anything"))
    bars = []
    for m in data.messages:
        parts = [
            (float(n), STATUS_COLORS[status], f"{m.rule} ({m.channel}) {status}: {n:,}")
            for status, n in _statuses(m)
        ]
        bars.append(_Bar(f"{m.rule} · {m.channel}", parts, f"{m.decisions:,} decisions"))
    top = max(sum(p[0] for p in b.parts) for b in bars)
    rows = (
        [_e(m.rule), _e(m.kind), _e(m.channel)]
        + [_n(v) for v in (m.decisions, m.sent, m.held_out, m.deferred, sum(m.suppressed.values()), m.failed)]
        for m in data.messages
    )
    head = ["rule", "kind", "channel", "decisions", "sent", "held out", "deferred", "suppressed", "failed"]
    body = (
        _legend(STATUS_COLORS.items())
        + _hbars(bars, top, "Decisions by rule")
        + _table(head, rows, range(3, 9))
    )
    reasons: Counter[str] = Counter()
    for m in data.messages:
        reasons.update(m.suppressed)
    body += "<h3>Not sent, by reason</h3>"
    ranked = [(r, n) for r, n in reasons.most_common() if n > 0]
    if not ranked:
        return _section("messages", title, lead, body + '<p class="empty">No decision was suppressed.</p>')
    reason_bars = [
        _Bar(_readable(r), [(float(n), STATUS_COLORS["suppressed"], f"{r}: {n:,}")], _n(n)) for r, n in ranked
    ]
    return _section("messages", title, lead, body + _hbars(reason_bars, ranked[0][1], "Not sent, by reason"))


def _escalations(data: ReportData) -> str:
    title, lead = "Escalations by account value", "Accounts handed to customer success, by monthly revenue."
    if not any(b.accounts for b in data.escalations):
        return _section("escalations", title, lead, _nothing("no accounts to group by value"))
    colors = {"escalated": PALETTE[5], "not escalated": "#D1D5DB"}
    bars = [
        _Bar(
            b.label,
            [
                (float(b.escalated), colors["escalated"], f"{b.label}: {b.escalated:,} escalated"),
                (
                    float(max(b.accounts - b.escalated, 0)),
                    colors["not escalated"],
                    f"{b.label}: {b.accounts:,} accounts",
                ),
            ],
            f"{b.escalated:,} of {b.accounts:,} ({_pct(_share(b.escalated, b.accounts))})",
        )
        for b in data.escalations
    ]
    top = max(max(b.accounts, b.escalated) for b in data.escalations)
    return _section(
        "escalations", title, lead, _legend(colors.items()) + _hbars(bars, top, "Escalations by MRR")
    )


def _shade(share: float) -> tuple[str, str]:
    """Background and text colour for a heatmap cell: pale to deep blue, text kept readable."""
    s = min(max(share, 0.0), 1.0)
    low, high = (0xF1, 0xF5, 0xF9), (0x08, 0x45, 0x94)
    rgb = (round(a + (b - a) * s) for a, b in zip(low, high, strict=True))
    return "#" + "".join(f"{c:02x}" for c in rgb), "#ffffff" if s > 0.5 else "#111827"


def _adoption(data: ReportData, colors: dict[str, str]) -> str:
    title, lead = "Feature adoption by segment", "Share of each segment's users who used each feature."
    segments = [s for s in colors if s in data.adoption]
    if not data.features or not segments:
        return _section("adoption", title, lead, _nothing("no feature use recorded"))
    rows = []
    for segment in segments:
        cells = [f'<span class="sw" style="background:{colors[segment]}"></span>{_e(segment)}']
        for feature in data.features:
            share = data.adoption[segment].get(feature)
            if share is None:
                cells.append("—")
                continue
            bg, fg = _shade(share)
            tip = _e(f"{segment} · {feature}: {_pct(share)}")
            cells.append(
                f'<div title="{tip}" style="background:{bg};color:{fg};padding:2px 6px">{_pct(share)}</div>'
            )
        rows.append(cells)
    head = ["segment", *(_readable(f) for f in data.features)]
    return _section("adoption", title, lead, _table(head, rows, range(1, len(head)), "heat"))


def _forest(rows: Sequence[LiftRow]) -> str:
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
        f'<line x1="{_f(x(0))}" y1="{top}" x2="{_f(x(0))}" y2="{_f(height - 36)}" stroke="#9ca3af" '
        'stroke-dasharray="4 3"/>'
    ]
    for i, r in enumerate(rows):
        y = top + i * row + 14
        color = VERDICT_COLORS.get(r.verdict, GREY)
        out.append(_text(left - 8, y + 4, _clip(r.rule, 28), "end", tip=r.rule))
        if r.difference is not None and r.interval is not None and not r.warning:
            a, b = x(r.interval[0]), x(r.interval[1])
            out.append(
                f'<line x1="{_f(a)}" y1="{y}" x2="{_f(b)}" y2="{y}" stroke="{color}" stroke-width="2"/>'
            )
            for cap in (a, b):
                out.append(
                    f'<line x1="{_f(cap)}" y1="{y - 5}" x2="{_f(cap)}" y2="{y + 5}" stroke="{color}"/>'
                )
            out.append(f'<circle cx="{_f(x(r.difference))}" cy="{y}" r="5" fill="{color}"/>')
        elif r.difference is not None:
            # Too few users for an interval: show where it landed, hollow, without a whisker.
            out.append(f'<circle cx="{_f(x(r.difference))}" cy="{y}" r="5" fill="none" stroke="{GREY}"/>')
        out.append(_text(WIDTH - right + 8, y + 4, r.verdict, cls="axis"))
    out.append(_text(x(0), height - 22, "0", "middle", "axis"))
    for value, anchor in ((lo, "start"), (hi, "end")):
        if abs(x(value) - x(0)) > 60:  # a range end right next to zero would overprint it
            out.append(_text(x(value), height - 22, _pp(value), anchor, "axis"))
    out.append(_text(x(0) - 8, height - 4, "← held out did better", "end", "axis"))
    out.append(_text(x(0) + 8, height - 4, "sent did better →", "start", "axis"))
    return _svg(height, "Difference in goal rate, sent vs held out", "".join(out))


def _lift(data: ReportData) -> str:
    title = "Lift: do messages work?"
    lead = "Goal rate of users who were sent a rule's message against users held out from it."
    if not data.lift:
        return _section("lift", title, lead, _nothing("no rule with a goal has sent or held out anyone"))
    rows = []
    for r in data.lift:
        color = VERDICT_COLORS.get(r.verdict, GREY)
        verdict = f'<div class="why"><span class="verdict" style="color:{color}">{_e(r.verdict)}</span>'
        verdict += (f'<div class="warn">{_e(r.warning)}</div>' if r.warning else "") + "</div>"
        goal = _e(r.goal) + (f'<div class="note">{r.pending:,} still waiting</div>' if r.pending else "")
        interval = "—"
        if r.interval is not None and not r.warning:
            interval = " to ".join(f'<span class="nowrap">{_pp(v)}</span>' for v in r.interval)
        rows.append(
            [
                _e(r.rule),
                goal,
                _n(r.treated),
                _n(r.treated_reached),
                _pct(r.treated_rate),
                _n(r.control),
                _n(r.control_reached),
                _pct(r.control_rate),
                _pp(r.difference) if r.difference is not None else "—",
                interval,
                verdict,
            ]
        )
    head = ["rule", "goal", "sent users", "reached", "rate", "held-out users", "reached", "rate"]
    head += ["difference", "95% CI", "verdict"]
    return _section("lift", title, lead, _forest(data.lift) + _table(head, rows, range(2, 10), "lift"))


def _quality(data: ReportData, colors: dict[str, str]) -> str:
    title, lead = (
        "Segment quality",
        "Does being in a segment say anything about using the product 4 weeks later?",
    )
    if not data.quality:
        return _section("quality", title, lead, _nothing("no segment has 4 weeks of known future"))
    rates = {q.segment: _share(q.retained, q.user_weeks) for q in data.quality}
    rows = ([_e(q.segment), _n(q.user_weeks), _n(q.retained), _pct(rates[q.segment])] for q in data.quality)
    table = _table(["segment", "user-weeks", "retained 4 weeks later", "rate"], rows, range(1, 4))
    bars = [
        _Bar(
            q.segment,
            [(rates[q.segment] or 0.0, colors[q.segment], f"{q.segment}: {_pct(rates[q.segment])}")],
            _pct(rates[q.segment]),
        )
        for q in data.quality
    ]
    overall = data.retained_overall
    top = max([r or 0.0 for r in rates.values()] + [overall or 0.0]) * 1.1
    marker = (overall, f"overall {_pct(overall)}") if overall is not None else None
    note = '<p class="note">A segment whose rate matches the overall rate predicts nothing: redefine it.</p>'
    return _section("quality", title, lead, _hbars(bars, top, "Retention by segment", marker) + table + note)


SECTIONS = (
    ("summary", "Summary"),
    ("segments", "Segments"),
    ("transitions", "Moves"),
    ("funnel", "Funnel"),
    ("messages", "Messages"),
    ("escalations", "Escalations"),
    ("adoption", "Adoption"),
    ("lift", "Lift"),
    ("quality", "Quality"),
)


def render(data: ReportData) -> str:
    """The whole report as one HTML5 document."""
    colors = _segment_colors(data)
    sections = [
        _summary(data),
        _segments(data, colors),
        _transitions(data, colors),
        _funnel(data),
        _messages(data),
        _escalations(data),
        _adoption(data, colors),
        _lift(data),
        _quality(data, colors),
    ]
    nav = "".join(f'<a href="#{ident}">{name}</a>' for ident, name in SECTIONS)
    when = data.generated_at.strftime("%d %b %Y, %H:%M %Z").strip()
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>Nudge report</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        f"<header><h1>Nudge report</h1><p>{_e(' · '.join(filter(None, (data.source, when))))}</p></header>\n"
        f"<nav>{nav}</nav>\n<main>\n" + "\n".join(sections) + "\n</main>\n</body>\n</html>\n"
    )
