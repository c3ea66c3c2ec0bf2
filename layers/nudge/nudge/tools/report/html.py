"""The report as ONE self-contained HTML file: inline CSS and SVG charts drawn by this package,
with no scripts, fonts, images or links to fetch, so it can be mailed around and opened offline.

Here are the page (skeleton, CSS, navigation) and `render`; the sections are in sections, the
SVG charts and colours in charts, escaping and the HTML pieces in markup.
"""

from __future__ import annotations

from nudge.domain.report_model import ReportData
from nudge.tools.report.charts import PALETTE
from nudge.tools.report.journeys import journeys
from nudge.tools.report.markup import esc
from nudge.tools.report.sections import (
    adoption,
    escalations,
    feedback,
    flows,
    funnel,
    lift,
    messages,
    quality,
    segments,
    summary,
    transitions,
)

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
.flow .count{font-size:15px;font-weight:600;fill:#111827}
.flow .edge-count{font-size:11px;fill:#1f2937;paint-order:stroke;stroke:#fff;stroke-width:3px}
h3{font-size:15px;margin:16px 0 0}
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


SECTIONS = (
    ("summary", "Summary"),
    ("segments", "Segments"),
    ("transitions", "Moves"),
    ("funnel", "Funnel"),
    ("messages", "Messages"),
    ("flows", "Flows"),
    ("journeys", "Journeys"),
    ("feedback", "Feedback"),
    ("escalations", "Escalations"),
    ("adoption", "Adoption"),
    ("lift", "Lift"),
    ("quality", "Quality"),
)


def render(data: ReportData) -> str:
    """The whole report as one HTML5 document."""
    colors = _segment_colors(data)
    sections = [
        summary(data),
        segments(data, colors),
        transitions(data, colors),
        funnel(data),
        messages(data),
        flows(data),
        journeys(data),
        feedback(data),
        escalations(data),
        adoption(data, colors),
        lift(data),
        quality(data, colors),
    ]
    nav = "".join(f'<a href="#{ident}">{name}</a>' for ident, name in SECTIONS)
    when = data.generated_at.strftime("%d %b %Y, %H:%M %Z").strip()
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>Nudge report</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        f"<header><h1>Nudge report</h1><p>{esc(' · '.join(filter(None, (data.source, when))))}</p></header>\n"
        f"<nav>{nav}</nav>\n<main>\n" + "\n".join(sections) + "\n</main>\n</body>\n</html>\n"
    )
