"""The report's sections, one function each, in page order: each returns a <section> with its
chart and table, or says plainly that there is nothing yet.
"""

from __future__ import annotations

import math
from collections import Counter

from nudge.domain.report_model import ReportData, RuleMessages
from nudge.tools.report.charts import (
    GREY,
    PALETTE,
    STATUS_COLORS,
    VERDICT_COLORS,
    WIDTH,
    Bar,
    axis_ticks,
    clip,
    coord,
    forest,
    hbars,
    svg,
    svg_rect,
    svg_text,
)
from nudge.tools.report.flow import flow_legend, flow_svg
from nudge.tools.report.markup import (
    duration,
    esc,
    html_table,
    legend,
    nothing,
    num,
    pct,
    pp,
    ratio,
    readable,
    section,
)


def summary(data: ReportData) -> str:
    sent = sum(m.sent for m in data.messages)
    escalated = sum(b.escalated for b in data.escalations)
    when = data.generated_at.strftime("%d %b %Y, %H:%M %Z").strip()
    tiles = [
        ("users", num(data.users), ""),
        ("accounts", num(data.accounts), ""),
        ("messages sent", num(sent), ""),
        ("accounts escalated to CS", num(escalated), ""),
        ("generated at", when, " wide"),
        ("source", data.source or "not given", " wide"),
    ]
    body = "".join(f'<div class="tile{w}"><b>{esc(v)}</b><span>{esc(k)}</span></div>' for k, v, w in tiles)
    return section("summary", "Summary", "", f'<div class="tiles">{body}</div>')


def segments(data: ReportData, colors: dict[str, str]) -> str:
    title, lead = "Segments over time", "Users in each lifecycle segment at the end of every ISO week."
    weeks = data.weekly_sizes
    if not weeks:
        return section("segments", title, lead, nothing("no weeks of segment history"))
    left, right, top_pad, bottom, height = 60, 16, 14, 52, 300
    plot_w, plot_h = WIDTH - left - right, height - top_pad - bottom
    ticks = axis_ticks(max(sum(sizes.values()) for _, sizes in weeks))
    ymax = ticks[-1]
    out: list[str] = []
    for t in ticks:
        y = top_pad + plot_h * (1 - t / ymax)
        out.append(f'<line class="grid" x1="{left}" y1="{coord(y)}" x2="{WIDTH - right}" y2="{coord(y)}"/>')
        out.append(svg_text(left - 6, y + 4, num(t), "end", "axis"))
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
                svg_rect(x, y, slot * 0.7, plot_h * count / ymax, color, f"{week} · {segment}: {count:,}")
            )
            base += count
        if i % every == 0:
            out.append(svg_text(left + slot * (i + 0.5), height - bottom + 18, week, "middle", "axis"))
    cy = top_pad + plot_h / 2
    out.append(
        f'<text x="16" y="{coord(cy)}" transform="rotate(-90 16 {coord(cy)})" '
        'text-anchor="middle">users</text>'
    )
    out.append(svg_text(left + plot_w / 2, height - 8, "ISO week", "middle"))
    used = [(s, c) for s, c in colors.items() if any(sizes.get(s) for _, sizes in weeks)]
    chart = svg(height, "Segment sizes by week", "".join(out))
    return section("segments", title, lead, legend(used) + chart)


def transitions(data: ReportData, colors: dict[str, str]) -> str:
    title, lead = "Moves between segments", "Users who changed segment from one week to the next."
    order = {s: i for i, s in enumerate(colors)}
    flows = sorted(
        ((a, b, n) for (a, b), n in data.flows.items() if n > 0), key=lambda f: (order[f[0]], order[f[1]])
    )
    if not flows:
        return section("transitions", title, lead, nothing("nobody has moved between segments"))
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
    out = [svg_text(x0, 16, "from", "end", "axis"), svg_text(x1, 16, "to", "start", "axis")]
    out_at, in_at = dict(src_y), dict(dst_y)
    for a, b, n in flows:
        t, ya, yb = n * scale, out_at[a], in_at[b]
        out_at[a], in_at[b] = ya + t, yb + t
        mx = (x0 + x1) / 2
        d = (
            f"M{coord(x0)},{coord(ya)} C{coord(mx)},{coord(ya)} {coord(mx)},{coord(yb)} "
            f"{coord(x1)},{coord(yb)} L{coord(x1)},{coord(yb + t)} C{coord(mx)},{coord(yb + t)} "
            f"{coord(mx)},{coord(ya + t)} {coord(x0)},{coord(ya + t)} Z"
        )
        out.append(
            f'<path d="{d}" fill="{colors[a]}" fill-opacity="0.45">'
            f"<title>{esc(f'{a} → {b}: {n:,} users')}</title></path>"
        )
    for side, tops, x, anchor, dx in (
        (sources, src_y, x0 - node_w, "end", -6),
        (targets, dst_y, x1, "start", 6),
    ):
        for name, y in tops.items():
            h = side[name] * scale
            out.append(svg_rect(x, y, node_w, h, colors[name], f"{name}: {side[name]:,}"))
            label_x = x + (node_w if dx > 0 else 0) + dx
            out.append(
                svg_text(label_x, y + h / 2 + 4, f"{clip(name, 22)} · {side[name]:,}", anchor, tip=name)
            )
    top_moves = sorted(flows, key=lambda f: -f[2])[:8]
    moves = ([f"{esc(a)} → {esc(b)}", num(n)] for a, b, n in top_moves)
    table = html_table(["from → to", "users"], moves, range(1, 2))
    return section("transitions", title, lead, svg(height, "Moves between segments", "".join(out)) + table)


def funnel(data: ReportData) -> str:
    title, lead = "Onboarding funnel", "Users who reached each step (and every step before it)."
    first = data.funnel[0].users if data.funnel else 0
    if not first:
        return section("funnel", title, lead, nothing("nobody has started onboarding"))
    bars = [
        Bar(
            readable(s.name),
            [(s.users, PALETTE[0], f"{s.name}: {s.users:,} users")],
            f"{s.users:,} · {pct(ratio(s.users, first))}",
        )
        for s in data.funnel
    ]
    rows = (
        [
            esc(readable(s.name)),
            num(s.users),
            pct(ratio(s.users, first)),
            duration(s.median_hours_from_previous),
        ]
        for s in data.funnel
    )
    table = html_table(
        ["step", "users", "% of first step", "median time from previous step"], rows, range(1, 4)
    )
    return section("funnel", title, lead, hbars(bars, first, "Onboarding funnel") + table)


def _statuses(m: RuleMessages) -> list[tuple[str, int]]:
    return [
        ("sent", m.sent),
        ("held out", m.held_out),
        ("deferred", m.deferred),
        ("cancelled", m.cancelled),
        ("failed", m.failed),
        ("suppressed", sum(m.suppressed.values())),
    ]


def messages(data: ReportData) -> str:
    title = "Messages by rule and journey step"
    lead = "What happened to each rule's and journey step's decisions, per channel (the one chosen)."
    if not data.messages:
        return section("messages", title, lead, nothing("no rule has decided anything"))
    bars = []
    for m in data.messages:
        parts = [
            (float(n), STATUS_COLORS[status], f"{m.rule} ({m.channel}) {status}: {n:,}")
            for status, n in _statuses(m)
        ]
        bars.append(Bar(f"{m.rule} · {m.channel}", parts, f"{m.decisions:,} decisions"))
    top = max(sum(p[0] for p in b.parts) for b in bars)
    rows = (
        [esc(m.rule), esc(m.kind), esc(m.channel)]
        + [
            num(v)
            for v in (m.decisions, m.sent, m.held_out, m.deferred, sum(m.suppressed.values()), m.failed)
        ]
        for m in data.messages
    )
    head = ["rule", "kind", "channel", "decisions", "sent", "held out", "deferred", "suppressed", "failed"]
    body = (
        legend(STATUS_COLORS.items())
        + hbars(bars, top, "Decisions by rule")
        + html_table(head, rows, range(3, 9))
    )
    reasons: Counter[str] = Counter()
    for m in data.messages:
        reasons.update(m.suppressed)
    body += "<h3>Not sent, by reason</h3>"
    ranked = [(r, n) for r, n in reasons.most_common() if n > 0]
    if not ranked:
        return section("messages", title, lead, body + '<p class="empty">No decision was suppressed.</p>')
    reason_bars = [
        Bar(readable(r), [(float(n), STATUS_COLORS["suppressed"], f"{r}: {n:,}")], num(n)) for r, n in ranked
    ]
    return section("messages", title, lead, body + hbars(reason_bars, ranked[0][1], "Not sent, by reason"))


FEEDBACK_RATES = (
    ("delivered", "delivered"),
    ("bounced", "bounced"),
    ("soft_bounced", "soft bounced"),
    ("complained", "complaints"),
    ("opened", "opened"),
    ("clicked", "clicked"),
)


IN_APP_KINDS = ("seen", "clicked", "answered", "dismissed")


def feedback(data: ReportData) -> str:
    title = "Feedback by rule and journey step"
    lead = (
        "What SES reported back for each rule's email: delivered, bounce and complaint rates per "
        "message sent (SES reviews a sender above 5% bounces or 0.1% complaints), open and click "
        "rates per message delivered. Then what users did with their in-app messages and surveys, "
        "per message put in their inbox, and the answers they gave."
    )
    rows = [m for m in data.messages if m.channel == "email" and m.sent]
    in_app = [m for m in data.messages if m.channel == "in_app" and m.sent]
    if not rows and not in_app:
        return section("feedback", title, lead, nothing("no email or in-app message has been sent"))
    body = "<h3>Email</h3>"
    if not rows:
        body += nothing("no email has been sent")
    else:
        body += html_table(
            ["rule", "sent", *(label for _, label in FEEDBACK_RATES)],
            ([esc(m.rule), num(m.sent), *(pct(m.rate(kind)) for kind, _ in FEEDBACK_RATES)] for m in rows),
            range(1, 2 + len(FEEDBACK_RATES)),
        )
    body += "<h3>In-app messages and surveys</h3>"
    if not in_app:
        return section("feedback", title, lead, body + nothing("no in-app message has been sent"))
    body += html_table(
        ["rule", "in inboxes", *IN_APP_KINDS, "answers"],
        (
            [
                esc(m.rule),
                num(m.sent),
                *(f"{num(m.feedback.get(kind, 0))} · {pct(m.rate(kind))}" for kind in IN_APP_KINDS),
                esc(", ".join(f"{answer} {n:,}" for answer, n in m.answers.items())) or "—",
            ]
            for m in in_app
        ),
        range(1, 2 + len(IN_APP_KINDS)),
    )
    return section("feedback", title, lead, body)


def escalations(data: ReportData) -> str:
    title, lead = "Escalations by account value", "Accounts handed to customer success, by monthly revenue."
    if not any(b.accounts for b in data.escalations):
        return section("escalations", title, lead, nothing("no accounts to group by value"))
    colors = {"escalated": PALETTE[5], "not escalated": "#D1D5DB"}
    bars = [
        Bar(
            b.label,
            [
                (float(b.escalated), colors["escalated"], f"{b.label}: {b.escalated:,} escalated"),
                (
                    float(max(b.accounts - b.escalated, 0)),
                    colors["not escalated"],
                    f"{b.label}: {b.accounts:,} accounts",
                ),
            ],
            f"{b.escalated:,} of {b.accounts:,} ({pct(ratio(b.escalated, b.accounts))})",
        )
        for b in data.escalations
    ]
    top = max(max(b.accounts, b.escalated) for b in data.escalations)
    return section(
        "escalations", title, lead, legend(colors.items()) + hbars(bars, top, "Escalations by MRR")
    )


def _shade(share: float) -> tuple[str, str]:
    """Background and text colour for a heatmap cell: pale to deep blue, text kept readable."""
    s = min(max(share, 0.0), 1.0)
    low, high = (0xF1, 0xF5, 0xF9), (0x08, 0x45, 0x94)
    rgb = (round(a + (b - a) * s) for a, b in zip(low, high, strict=True))
    return "#" + "".join(f"{c:02x}" for c in rgb), "#ffffff" if s > 0.5 else "#111827"


def adoption(data: ReportData, colors: dict[str, str]) -> str:
    title, lead = "Feature adoption by segment", "Share of each segment's users who used each feature."
    segments = [s for s in colors if s in data.adoption]
    if not data.features or not segments:
        return section("adoption", title, lead, nothing("no feature use recorded"))
    rows = []
    for segment in segments:
        cells = [f'<span class="sw" style="background:{colors[segment]}"></span>{esc(segment)}']
        for feature in data.features:
            share = data.adoption[segment].get(feature)
            if share is None:
                cells.append("—")
                continue
            bg, fg = _shade(share)
            tip = esc(f"{segment} · {feature}: {pct(share)}")
            cells.append(
                f'<div title="{tip}" style="background:{bg};color:{fg};padding:2px 6px">{pct(share)}</div>'
            )
        rows.append(cells)
    head = ["segment", *(readable(f) for f in data.features)]
    return section("adoption", title, lead, html_table(head, rows, range(1, len(head)), "heat"))


def lift(data: ReportData) -> str:
    title = "Lift: do messages work?"
    lead = (
        "Goal rate of users who were sent a rule's message against users held out from it. The 95% "
        "interval is always valid: it may be read any day, as often as you like, without more false "
        "verdicts (a mixture SPRT confidence sequence)."
    )
    if not data.lift:
        return section("lift", title, lead, nothing("no rule with a goal has sent or held out anyone"))
    rows = []
    for r in data.lift:
        color = VERDICT_COLORS.get(r.verdict, GREY)
        verdict = f'<div class="why"><span class="verdict" style="color:{color}">{esc(r.verdict)}</span>'
        verdict += "".join(f'<div class="warn">{esc(w)}</div>' for w in (r.warning, r.early) if w) + "</div>"
        goal = esc(r.goal) + (f'<div class="note">{r.pending:,} still waiting</div>' if r.pending else "")
        interval = "—"
        if r.interval is not None and not r.warning:
            interval = " to ".join(f'<span class="nowrap">{pp(v)}</span>' for v in r.interval)
        rows.append(
            [
                esc(r.rule),
                goal,
                num(r.treated),
                num(r.treated_reached),
                pct(r.treated_rate),
                num(r.control),
                num(r.control_reached),
                pct(r.control_rate),
                pp(r.difference) if r.difference is not None else "—",
                interval,
                verdict,
            ]
        )
    head = ["rule", "goal", "sent users", "reached", "rate", "held-out users", "reached", "rate"]
    head += ["difference", "95% interval", "verdict"]
    return section("lift", title, lead, forest(data.lift) + html_table(head, rows, range(2, 10), "lift"))


def flows(data: ReportData) -> str:
    title = "Flows: each rule's users, step by step"
    lead = (
        "Users a rule decided for, whether their first decision was sent or held out (or never "
        "either: suppressed, deferred, cancelled), and who then converted within the goal's window."
    )
    if not data.rule_flows:
        return section("flows", title, lead, nothing("no rule has decided anything"))
    body = "".join(f"<h3>{esc(flow.title)}</h3>{flow_svg(flow)}" for flow in data.rule_flows)
    return section("flows", title, lead, body + flow_legend())


def quality(data: ReportData, colors: dict[str, str]) -> str:
    title, lead = (
        "Segment quality",
        "Does being in a segment say anything about using the product 4 weeks later?",
    )
    if not data.quality:
        return section("quality", title, lead, nothing("no segment has 4 weeks of known future"))
    rates = {q.segment: ratio(q.retained, q.user_weeks) for q in data.quality}
    rows = ([esc(q.segment), num(q.user_weeks), num(q.retained), pct(rates[q.segment])] for q in data.quality)
    table = html_table(["segment", "user-weeks", "retained 4 weeks later", "rate"], rows, range(1, 4))
    bars = [
        Bar(
            q.segment,
            [(rates[q.segment] or 0.0, colors[q.segment], f"{q.segment}: {pct(rates[q.segment])}")],
            pct(rates[q.segment]),
        )
        for q in data.quality
    ]
    overall = data.retained_overall
    top = max([r or 0.0 for r in rates.values()] + [overall or 0.0]) * 1.1
    marker = (overall, f"overall {pct(overall)}") if overall is not None else None
    note = '<p class="note">A segment whose rate matches the overall rate predicts nothing: redefine it.</p>'
    return section("quality", title, lead, hbars(bars, top, "Retention by segment", marker) + table + note)
