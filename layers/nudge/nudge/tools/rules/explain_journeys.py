"""`nudge rules explain USER`, its journeys part: for each journey, where the user is (step, since
when, variant), why (the entry, goal, exit, branch and wait conditions, each ✓ or ✗ with the
user's values), and what is next and when. From the user's instances (the segment record's, live;
or those a replay of the history file made) and the user judged now."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from nudge.conditions import tree as C
from nudge.conditions.facts import last_done
from nudge.model.journeys import HOLDOUT, JourneyInstance
from nudge.rulebook.journey_specs import END
from nudge.rulebook.journeys import Journey, Step
from nudge.rulebook.ruleset import RuleSet
from nudge.tools.journey_text import entry_text, step_text
from nudge.tools.rules.condition_lines import condition_lines
from nudge.tools.rules.history import iso


def _of(journey: Journey, instances: Mapping[str, JourneyInstance]) -> list[JourneyInstance]:
    """The journey's instances, live ones first, then the newest ended."""
    mine = [i for i in instances.values() if i.journey == journey.id]
    return sorted(mine, key=lambda i: (not i.live, -i.entered_at.timestamp()))


def _variant(instance: JourneyInstance) -> str:
    return f", variant {instance.variant}" if instance.variant and instance.variant != HOLDOUT else ""


def next_of(journey: Journey, instance: JourneyInstance, ctx: C.Context) -> tuple[datetime | None, str]:
    """What moves the instance on, and when (None: on an event or the next evaluation)."""
    if not instance.live:
        return None, "nothing: ended"
    goal = journey.spec.goal
    if instance.variant == HOLDOUT:
        return instance.wake_at, "held out: followed until the goal window ends, sent nothing"
    step = journey.steps.get(instance.step or "")
    if step is None:
        return None, f"exits with reason step_removed at the next evaluation (step {instance.step!r} is gone)"
    spec = step.spec
    if step.kind == "wait":
        return instance.wake_at, f"on to {_name(step.next)} when the wait ends"
    if spec.wait_until is not None:
        done = spec.wait_until.then or step.next
        timeout = spec.wait_until.on_timeout or step.next
        what = f"on to {_name(done)} as soon as it happens, else to {_name(timeout)} at the timeout"
        return instance.wake_at, what
    window = f" (goal window ends {iso(instance.entered_at + goal.within)})" if goal else ""
    return None, f"runs {step.id} at the next evaluation{window}"


def _name(step: str) -> str:
    return "the end" if step == END else step


def _step_why(step: Step, instance: JourneyInstance, ctx: C.Context) -> list[str]:
    spec = step.spec
    if spec.wait_until is not None:
        if spec.wait_until.event:
            done = last_done(ctx, spec.wait_until.event, step.where)
            happened = done is not None and done > instance.step_since
            mark = "✓" if happened else "✗"
            when = f" (last {iso(done)})" if done else ""
            return [f"      {mark} did {spec.wait_until.event} since {iso(instance.step_since)}{when}"]
        return condition_lines(step.condition, ctx, 3) if step.condition is not None else []
    if step.kind == "branch":
        lines: list[str] = []
        for node, target in step.cases:
            lines.append(f"      -> {target} when:")
            lines += condition_lines(node, ctx, 4)
        lines.append(f"      -> {step.otherwise} otherwise")
        return lines
    return []


def _goal_lines(journey: Journey, instance: JourneyInstance, ctx: C.Context) -> list[str]:
    goal = journey.spec.goal
    if goal is None:
        return []
    head = f"    goal (ends it as converted, until {iso(instance.entered_at + goal.within)}):"
    if journey.goal is not None:
        return [head, *condition_lines(journey.goal, ctx, 3)]
    assert goal.event is not None
    done = last_done(ctx, goal.event, journey.goal_where)
    mark = "✓" if done is not None and done > instance.entered_at else "✗"
    when = f" (last {iso(done)})" if done else ""
    return [head, f"      {mark} did {goal.event} since entering{when}"]


def journey_lines(rules: RuleSet, instances: Mapping[str, JourneyInstance], ctx: C.Context) -> list[str]:
    if not rules.journeys:
        return []
    lines = ["Journeys:"]
    for journey in rules.journeys:
        mine = _of(journey, instances)
        lines.append(f"  {journey.id} ({journey.spec.kind}, entry {entry_text(journey)}):")
        if journey.entry is not None:
            lines += condition_lines(journey.entry, ctx, 2)
        if not mine:
            lines.append("    not entered")
        for instance in mine[:3]:
            key = f" for {instance.key}" if instance.key else ""
            if instance.live:
                where = "held out" if instance.variant == HOLDOUT else f"at step {instance.step}"
                lines.append(
                    f"    {where}{key} since {iso(instance.step_since)}{_variant(instance)} "
                    f"(entered {iso(instance.entered_at)})"
                )
                step = journey.steps.get(instance.step or "")
                if step is not None:
                    lines.append(f"      {step_text(step)}")
                    lines += _step_why(step, instance, ctx)
                when, what = next_of(journey, instance, ctx)
                lines.append(f"    next: {iso(when) + ': ' if when else ''}{what}")
            else:
                lines.append(
                    f"    ended{key} {iso(instance.exited_at) if instance.exited_at else ''}: "
                    f"{instance.reason}{_variant(instance)} (entered {iso(instance.entered_at)}, "
                    f"path {' > '.join(instance.path) or '-'})"
                )
        if mine and mine[0].live:
            lines += _goal_lines(journey, mine[0], ctx)
        for node in journey.exits if mine and mine[0].live else ():
            lines.append("    exit when:")
            lines += condition_lines(node, ctx, 3)
    return lines


def journey_data(
    rules: RuleSet, instances: Mapping[str, JourneyInstance], ctx: C.Context
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for journey in rules.journeys:
        rows = []
        for instance in _of(journey, instances):
            when, what = next_of(journey, instance, ctx)
            rows.append(
                {
                    **instance.model_dump(mode="json"),
                    "next_at": iso(when) if when else None,
                    "next": what,
                }
            )
        entry = C.holds(journey.entry, ctx) if journey.entry is not None else None
        out.append(
            {"journey": journey.id, "entry": entry_text(journey), "entry_holds": entry, "instances": rows}
        )
    return out
