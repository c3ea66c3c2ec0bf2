"""The report's journeys section: each journey drawn as a flow (users per step and per edge), then
its experiment table: per variant, split path and holdout, entered, each step reached and converted
within the window, and each comparison with its always-valid 95% interval and warnings."""

from __future__ import annotations

from nudge.domain.experiment import Comparison
from nudge.domain.journey_report import JourneyResult
from nudge.domain.report_model import ReportData
from nudge.model.journeys import HOLDOUT
from nudge.tools.report.charts import GREY, VERDICT_COLORS
from nudge.tools.report.flow import flow_legend, flow_svg
from nudge.tools.report.markup import esc, html_table, nothing, num, pct, pp, section

DIRECTION_VERDICT = {"higher": "works", "lower": "hurts", "no difference seen": "no effect seen"}


def _arms_table(result: JourneyResult) -> str:
    head = ["arm", "entered", *(f"at {s}" for s in result.steps), "window closed", "converted", "rate"]
    rows = [
        [
            esc(arm.name),
            num(arm.entered),
            *(num(arm.reached.get(s, 0)) for s in result.steps),
            num(arm.closed) + (f'<div class="note">{arm.pending:,} in window</div>' if arm.pending else ""),
            num(arm.converted),
            pct(arm.converted / arm.closed if arm.closed else None),
        ]
        for arm in result.arms
    ]
    return html_table(head, rows, range(1, len(head)), "lift")


def _comparison_row(c: Comparison) -> list[str]:
    # Against the holdout a difference is the journey's effect; between variants, only which is higher.
    verdict = DIRECTION_VERDICT.get(c.direction, c.direction) if c.b.name == HOLDOUT else c.direction
    color = VERDICT_COLORS.get(DIRECTION_VERDICT.get(c.direction, ""), GREY)
    why = f'<div class="why"><span class="verdict" style="color:{color}">{esc(verdict)}</span>'
    why += "".join(f'<div class="warn">{esc(w)}</div>' for w in c.warnings) + "</div>"
    interval = "—"
    if c.interval is not None and not c.too_small:
        interval = " to ".join(f'<span class="nowrap">{pp(v)}</span>' for v in c.interval)
    level = f"{(1 - c.alpha) * 100:.1f}".rstrip("0").rstrip(".")
    return [
        f"{esc(c.a.name)} against {esc(c.b.name)}",
        pct(c.a.rate),
        pct(c.b.rate),
        pp(c.difference) if c.difference is not None else "—",
        f'{interval}<div class="note">{level}% each</div>' if interval != "—" else interval,
        why,
    ]


def journeys(data: ReportData) -> str:
    title = "Journeys: users step by step, and what each variant does"
    lead = (
        "Each journey's users at every step and along every edge (from the path each instance took), "
        "then per variant, split path and holdout: entered, each step reached, converted within the "
        "goal's window, and the difference with a 95% always-valid interval (split among the "
        "comparisons of a journey, so the family holds at 95%)."
    )
    if not data.journeys:
        return section("journeys", title, lead, nothing("no one has entered a journey"))
    flows = {f.id: f for f in data.journey_flows}
    body = ""
    for result in data.journeys:
        flow = flows.get(f"journey:{result.journey}")
        body += f"<h3>{esc(flow.title if flow else result.journey)}</h3>"
        if result.goal:
            body += f'<p class="note">goal: {esc(result.goal)}; {result.live:,} instances live</p>'
        if flow is not None:
            body += flow_svg(flow)
        body += _arms_table(result)
        if result.comparisons:
            head = ["comparison", "rate", "against", "difference", "95% interval", "verdict"]
            body += html_table(head, [_comparison_row(c) for c in result.comparisons], range(1, 4), "lift")
    return section("journeys", title, lead, body + flow_legend())
