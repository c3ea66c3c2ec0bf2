"""A condition as the marketer reads it, for `nudge rules test` (why a case failed) and `explain`:
an indented tree, each part with ✓ or ✗ and each test with the user's value and what it needs.
"""

from __future__ import annotations

from nudge.conditions import facts
from nudge.conditions import features as F
from nudge.conditions import tree as C
from nudge.model.decisions import Value
from nudge.rulebook.ruleset import Score
from nudge.services.rule_tests import show_value


def condition_lines(node: C.Node, ctx: C.Context, depth: int = 0) -> list[str]:
    """A condition as an indented tree: each part with ✓ or ✗ and each test with the user's value."""
    pad = "  " * depth
    ok = C.holds(node, ctx)
    if isinstance(node, C.All):
        node = _without_guards(node)
    if isinstance(node, C.Check):
        return [f"{pad}{_mark(ok)} {_check_text(node, ctx)}"]
    if isinstance(node, C.Not):
        return [f"{pad}{_mark(ok)} not:", *condition_lines(node.item, ctx, depth + 1)]
    choice = _one_of(node)
    if choice is not None:  # `segment: [a, b]` reads better as one line than as an any-of tree
        fact, values = choice
        value = fact.compute(ctx)
        needs = ", ".join(map(show_value, values))
        return [f"{pad}{_mark(ok)} {fact.describe}: {show_value(value)} (needs one of {needs})"]
    lines = [f"{pad}{_mark(ok)} {'all of' if isinstance(node, C.All) else 'any of'}:"]
    for item in node.items:
        lines += condition_lines(item, ctx, depth + 1)
    return lines


def _without_guards(node: C.All) -> C.Node:
    """Drop the "is a number" guard the parser adds before a numeric trait's bounds.

    The guard only keeps a missing trait from passing `at_most`; the bound beside it shows the
    value ("missing") anyway, so a marketer need not see a test they never wrote.
    """
    others = {n.fact.key for n in node.items if isinstance(n, C.Check) and not _is_guard(n)}
    kept = tuple(
        n for n in node.items if not (isinstance(n, C.Check) and _is_guard(n) and n.fact.key in others)
    )
    return kept[0] if len(kept) == 1 else C.All(kept)


def _is_guard(check: C.Check) -> bool:
    return check.op == "gt" and check.value == facts.MISSING_NUMBER


def _one_of(node: C.All | C.AnyOf) -> tuple[C.Fact, list[Value]] | None:
    if not isinstance(node, C.AnyOf):
        return None
    checks = [n for n in node.items if isinstance(n, C.Check) and n.op == "eq"]
    if len(checks) != len(node.items) or len({c.fact.key for c in checks}) != 1:
        return None
    return checks[0].fact, [c.value for c in checks]


def _mark(ok: bool) -> str:
    return "✓" if ok else "✗"


def _is_flag(check: C.Check) -> bool:
    return check.fact.key.startswith("did__")  # did-but-not facts are 1 (yes) or 0 (no)


def _check_text(check: C.Check, ctx: C.Context) -> str:
    value = check.fact.compute(ctx)
    shown = ("yes" if value == 1 else "no") if _is_flag(check) else show_value(value)
    return f"{check.fact.describe}: {shown} (needs {_needs(check)})"


def _needs(check: C.Check) -> str:
    op, value = check.op, check.value
    if _is_flag(check):
        return "yes" if value == 1 else "no"
    if op == "lt" and value == F.NEVER:
        return "to be reached"  # `milestone: x`: reached at any time
    if op == "gt" and value == facts.MISSING_NUMBER:
        return "a number"
    if value == "":
        return "no value" if op == "eq" else "a value"
    words = {
        "eq": "",
        "neq": "not ",
        "gte": "at least ",
        "lte": "at most ",
        "gt": "more than ",
        "lt": "less than ",
    }
    return f"{words[op]}{show_value(value)}"


def score_lines(label: str, score: Score, value: float, band: str, ctx: C.Context) -> list[str]:
    """The score and its band, then each signal with ✓ or ✗, its points and its condition."""
    bands = score.bands
    lines = [f"{label}: {value:g} -> {band} (high from {bands.high:g}, mid from {bands.mid:g})"]
    for signal in score.signals:
        ok = C.holds(signal.condition, ctx)
        lines.append(f"  {_mark(ok)} {signal.id} {signal.points:+g}")
        lines += condition_lines(signal.condition, ctx, 2)
    return lines
