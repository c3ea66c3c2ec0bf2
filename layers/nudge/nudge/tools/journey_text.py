"""A journey in words: the text diagram `nudge journeys show` prints, and the entry and step lines
`nudge rules explain` reuses (from the Journey the engine runs, nudge.rulebook.journeys)."""

from __future__ import annotations

from datetime import timedelta

from nudge.conditions import tree as C
from nudge.model.durations import format_duration
from nudge.rulebook.journey_specs import END, ReEntryAfter, WaitSpec
from nudge.rulebook.journeys import Journey, Step

_OPS = {"eq": "=", "neq": "≠", "gte": "≥", "lte": "≤", "gt": ">", "lt": "<"}


def diagram(journey: Journey) -> list[str]:
    spec = journey.spec
    about = f": {spec.description}" if spec.description else ""
    lines = [f"{journey.id} ({spec.kind}, priority {spec.priority}){about}"]
    re_entry = spec.re_entry
    again = (
        f"after {format_duration(re_entry.after)}"
        if isinstance(re_entry, ReEntryAfter)
        else re_entry.replace("_", " ")
    )
    lines.append(f"  entry    {entry_text(journey)}; re-entry {again}; holdout {spec.holdout:g}%")
    if spec.goal is not None:
        goal = (
            describe(journey.goal)
            if journey.goal is not None
            else "any meaningful use"
            if spec.goal.event == "any"
            else f"did {spec.goal.event}{_where(journey.goal_where)}"
        )
        lines.append(f"  goal     {goal} within {format_duration(spec.goal.within)} -> converted")
    for node in journey.exits:
        lines.append(f"  exit     {describe(node)}")
    blocked = spec.blocked
    lines.append(
        "  blocked  "
        + (f"retry within {format_duration(blocked.retry_within)}" if blocked.do == "retry" else blocked.do)
    )
    lines.append("")
    for step_spec in spec.steps:
        step = journey.steps[step_spec.id]
        lines.append(f"  [{step.id}] {step_text(step)}")
        edges = _edges(step)
        for index, (label, target) in enumerate(edges):
            corner = "└" if index == len(edges) - 1 else "├"
            lines.append(f"      {corner}─{' ' + label + ' ' if label else ''}─> {target}")
    return lines


def entry_text(journey: Journey) -> str:
    entry = journey.spec.entry
    if journey.entry is not None:
        return f"when {describe(journey.entry)}"
    if entry.segment is not None:
        return f"on entering segment {entry.segment}"
    assert entry.event is not None
    key = f", one per {entry.event.key}" if entry.event.key else ""
    return f"on {entry.event.name}{_where(journey.entry_where)}{key}"


def step_text(step: Step) -> str:
    spec = step.spec
    if spec.send is not None:
        if spec.send.variants:
            shares = ", ".join(f"{v.template} {v.weight}%" for v in spec.send.variants)
            return f"send {' > '.join(spec.send.channels)}: variants {shares}"
        return f"send {' > '.join(spec.send.channels)}: {spec.send.template}"
    if step.kind == "wait":
        wait = spec.wait
        if isinstance(wait, timedelta):
            return f"wait {format_duration(wait)}"
        assert isinstance(wait, WaitSpec)
        if wait.until_time is not None:
            return f"wait until {wait.until_time} in the user's timezone"
        return f"wait until the date in trait {wait.until_trait}"
    if spec.wait_until is not None:
        what = (
            f"did {spec.wait_until.event}{_where(step.where)}"
            if spec.wait_until.event
            else describe(step.condition)
        )
        timeout = format_duration(spec.wait_until.timeout) if spec.wait_until.timeout else "ever"
        return f"wait until {what}, at most {timeout}"
    if step.kind == "branch":
        return "branch"
    if step.kind == "split":
        return "split"
    if spec.escalate is not None:
        return "escalate to customer success" + (
            f": {spec.escalate.next_step}" if spec.escalate.next_step else ""
        )
    assert spec.update is not None
    return f"set trait {spec.update.trait} = {spec.update.value}"


def _edges(step: Step) -> list[tuple[str, str]]:
    spec = step.spec
    if step.kind == "branch":
        return [(describe(node), target) for node, target in step.cases] + [("else", step.otherwise)]
    if step.kind == "split":
        return [(f"{p.weight}%", p.step) for p in spec.split or []]
    if spec.wait_until is not None:
        return [
            ("done", spec.wait_until.then or step.next),
            ("timeout", spec.wait_until.on_timeout or step.next),
        ]
    return [("", step.next if step.next != END else END)]


def describe(node: C.Node | None) -> str:
    if node is None:
        return "?"
    if isinstance(node, C.Check):
        return f"{node.fact.describe} {_OPS[node.op]} {node.value}"
    if isinstance(node, C.Not):
        return f"not ({describe(node.item)})"
    joiner = " and " if isinstance(node, C.All) else " or "
    return "(" + joiner.join(describe(n) for n in node.items) + ")"


def _where(where: tuple[str, frozenset[str]] | None) -> str:
    if where is None:
        return ""
    prop, values = where
    return f" with {prop} {' or '.join(sorted(values))}"
