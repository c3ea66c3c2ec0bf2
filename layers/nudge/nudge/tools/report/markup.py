"""The report's HTML text: escaping, numbers and shares in words, and the pieces every section
is built from (a section, a table, a legend, the empty case).

Every name that comes from data (segments, rules, features, reasons, the source) passes through
`esc` before it lands in text or an attribute: a segment id is whatever the rules file says.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def num(value: float) -> str:
    return f"{value:,.0f}"


def trim(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def ratio(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def pct(share: float | None) -> str:
    if share is None:
        return "—"
    percent = share * 100
    # A decimal only where it carries information: 4.5% vs 4%, but 45% rather than 45.3%.
    return (trim(percent) if abs(percent) < 10 else f"{percent:.0f}") + "%"


def pp(value: float) -> str:
    return f"{value * 100:+.1f} pp"


def duration(hours: float | None) -> str:
    if hours is None:
        return "—"
    if hours * 60 < 1:
        return "under a minute"
    if hours < 1:
        return f"{round(hours * 60)} min"
    if hours < 48:
        return f"{trim(hours)} h"
    return f"{trim(hours / 24)} days"


def readable(name: str) -> str:
    """cap_email_day -> cap email day: marketers read words, not identifiers."""
    return name.replace("_", " ").strip() or "unknown"


def nothing(what: str) -> str:
    return f'<p class="empty">Nothing yet: {esc(what)}.</p>'


def section(ident: str, title: str, lead: str, body: str) -> str:
    lead_html = f'<p class="lead">{esc(lead)}</p>' if lead else ""
    return f'<section id="{ident}"><h2>{esc(title)}</h2>{lead_html}{body}</section>'


def legend(items: Iterable[tuple[str, str]]) -> str:
    entries = "".join(
        f'<li><span class="sw" style="background:{color}"></span>{esc(name)}</li>' for name, color in items
    )
    return f'<ul class="legend">{entries}</ul>'


def html_table(head: Sequence[str], rows: Iterable[Sequence[str]], numeric: range, cls: str = "") -> str:
    """Cells are HTML already (callers escape); the `numeric` columns align right."""

    def cell(tag: str, index: int, content: str) -> str:
        align = ' class="num"' if index in numeric else ""
        return f"<{tag}{align}>{content}</{tag}>"

    header = "".join(cell("th", i, esc(h)) for i, h in enumerate(head))
    body = "".join("<tr>" + "".join(cell("td", i, c) for i, c in enumerate(r)) + "</tr>" for r in rows)
    klass = f' class="{cls}"' if cls else ""
    return f"<table{klass}><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>"
