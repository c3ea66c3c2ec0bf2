"""The journey engine: pure, takes `now`, returns values.

Given a journey (nudge.rulebook.journeys), the user's instances of it, the user's Context and the
facts of this evaluation, `run_journey` says whether the user enters, moves each live instance on
as far as it can go now (step by step: nudge.domain.journey_steps), and returns the new instances,
the decisions to send and when time alone moves something next (the timer, for the due index).

Order on each instance: the goal (converted), then exits (left), then steps. A step is left only
when its time has come; a wait counts from when the step began (`step_since`), never from the
evaluation, so a late sweep does not stretch a journey. Decision ids hash (journey, user, key, run,
step, seq): the same starting instance makes the same ids whoever evaluates it, so a redelivered
record or two racing evaluations publish one decision once (dispatch claims ids), and the
versioned write of the record lets one of them advance it. Two racing evaluations that took
different paths (one saw an event, the other a timeout) make different ids: each instance keeps the
ids its advances made (`decided`), and dispatch sends only those of the saved instance
(nudge.domain.journey_sends.on_saved_path).

Assignment is deterministic per user and journey (a hash, as holdouts are): a user's variant,
split path and holdout never change between evaluations or Lambdas.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from nudge.conditions.facts import last_done
from nudge.conditions.tree import Context, holds_in
from nudge.domain.journey_steps import Advance, branch, ended
from nudge.domain.trigger_decisions import trigger_decision
from nudge.domain.verdicts import in_group
from nudge.model.decisions import Decision, Value
from nudge.model.journeys import HOLDOUT, JourneyInstance, instance_key
from nudge.model.limits import JOURNEY_EVENT_ENTRY_SECONDS, JOURNEY_INSTANCES_KEPT, JOURNEY_STEPS_PER_ADVANCE
from nudge.rulebook.journey_specs import END, ReEntryAfter
from nudge.rulebook.journeys import Journey


@dataclass(frozen=True)
class JourneyRun:
    """What one evaluation did to a user's instances of one journey."""

    instances: dict[str, JourneyInstance]  # instance_key -> instance, every one given plus any new
    decisions: list[Decision] = field(default_factory=list)
    # User traits `update` steps set: message id (deterministic, like a decision id) -> (trait, value).
    updates: dict[str, tuple[str, Value]] = field(default_factory=dict)
    wake_at: datetime | None = None
    visited: list[str] = field(default_factory=list)  # "key:step" in the order run (tests, explain)


def run_journey(
    journey: Journey,
    instances: Mapping[str, JourneyInstance],
    ctx: Context,
    facts: dict[str, Value],
    *,
    entered_segment: str | None = None,
    fallback_timezone: str = "UTC",
    entries: frozenset[str] | None = None,
) -> JourneyRun:
    """`entries`: the ids of the programs whose `when` entry holds (the evaluation's entries pass);
    None: judged here."""
    if journey.trigger is not None:
        decided: list[Decision] = []
        steps: list[str] = []
        _run_instant(journey, ctx, facts, entries, decided, steps)
        return JourneyRun({}, decided, visited=[v.removeprefix(journey.id) for v in steps])
    now = ctx.now
    out = dict(instances)
    if journey.entry is not None and not _entry_holds(journey, facts, entries):
        out.update(
            {
                k: i.model_copy(update={"rearmed": True})
                for k, i in out.items()
                if not i.live and not i.rearmed
            }
        )
    entering = _entering(journey, out, ctx, facts, entered_segment, entries)
    if entering is not None:
        key, run = entering
        ikey = instance_key(journey.id, key)
        prior = out.get(ikey)
        entered = _enter(journey, ctx.user.user_id, key, run, now)
        # The previous run's decisions stay known: one of them may still be on its way to dispatch.
        out[ikey] = entered.model_copy(update={"decided": prior.decided or ()}) if prior else entered
    decisions: list[Decision] = []
    updates: dict[str, tuple[str, Value]] = {}
    visited: list[str] = []
    wakes: list[datetime] = []
    for ikey, instance in sorted(out.items()):
        if not instance.live:
            continue
        moved = Advance(journey, instance, ctx, facts, fallback_timezone, decisions, updates, visited).go()
        out[ikey] = moved
        if moved.live and moved.wake_at is not None:
            wakes.append(moved.wake_at)
    return JourneyRun(out, decisions, updates, min(wakes) if wakes else None, visited)


def _run_instant(
    journey: Journey,
    ctx: Context,
    facts: dict[str, Value],
    entries: frozenset[str] | None,
    decisions: list[Decision],
    visited: list[str],
) -> None:
    """A program that keeps no instance, a compiled trigger (nudge.rulebook.trigger_journeys): when
    its entry holds it runs from its first step to its end at once (send, a branch, escalate: no
    wait), deciding at each send and escalate step. Its decision ids, per cooldown window, are what
    re-enters it (nudge.domain.trigger_decisions), so no instance is written, read or copied."""
    trigger = journey.trigger
    assert trigger is not None
    if not _entry_holds(journey, facts, entries):
        return
    at = journey.first
    for _ in range(JOURNEY_STEPS_PER_ADVANCE):
        if at == END:
            return
        step = journey.steps[at]
        visited.append(f"{journey.id}::{at}")  # journey:key:step, its key ""
        if step.kind == "branch":
            at = branch(step, facts)
            continue
        action = str(trigger.spec.action) if step.kind == "send" else "escalate"
        decisions.append(trigger_decision(trigger, action, ctx.user, facts, ctx.now))
        at = step.next


def _may_enter(journey: Journey, entries: frozenset[str] | None, entered_segment: str | None) -> bool:
    """False when the user cannot enter now, on what is known at no cost (the rest is _entering's)."""
    if journey.entry is not None:
        return entries is None or journey.id in entries
    segment = journey.spec.entry.segment
    return segment is None or segment == entered_segment


def run_journeys(
    journeys: list[Journey],
    instances: Mapping[str, JourneyInstance],
    ctx: Context,
    facts: dict[str, Value],
    *,
    entered_segment: str | None = None,
    fallback_timezone: str = "UTC",
    entries: frozenset[str] | None = None,
) -> JourneyRun:
    """Every program of the rules (RuleSet.programs: triggers as one-step journeys, then journeys)
    for one user at one evaluation; instances of a journey no longer in the rules end with reason
    journey_removed. Ended instances beyond the bound are dropped, oldest first (live ones never)."""
    # A compiled trigger keeps no instance: one of its id in the record is a removed journey's.
    kept = {j.id: j for j in journeys if j.trigger is None} if instances else {}
    out = end_orphans(instances, kept, ctx.now) if instances else {}
    decisions: list[Decision] = []
    updates: dict[str, tuple[str, Value]] = {}
    visited: list[str] = []
    wakes: list[datetime] = []
    for journey in journeys:
        if journey.trigger is not None:
            if entries is None or journey.id in entries:
                _run_instant(journey, ctx, facts, entries, decisions, visited)
            continue
        if out:
            mine = {k: i for k, i in out.items() if i.journey == journey.id}
            if not mine and not _may_enter(journey, entries, entered_segment):
                continue
        elif _may_enter(journey, entries, entered_segment):
            mine = {}
        else:
            continue  # nothing to move on, and no entry (most journeys, most evaluations)
        run = run_journey(
            journey,
            mine,
            ctx,
            facts,
            entered_segment=entered_segment,
            fallback_timezone=fallback_timezone,
            entries=entries,
        )
        out.update(run.instances)
        decisions += run.decisions
        if run.updates:
            updates.update(run.updates)
        visited += [f"{journey.id}:{v}" for v in run.visited]
        if run.wake_at is not None:
            wakes.append(run.wake_at)
    return JourneyRun(_bounded(out), decisions, updates, min(wakes) if wakes else None, visited)


def _bounded(instances: dict[str, JourneyInstance]) -> dict[str, JourneyInstance]:
    ended = sorted((i.exited_at, k) for k, i in instances.items() if i.exited_at is not None)
    drop = {k for _, k in ended[: max(0, len(instances) - JOURNEY_INSTANCES_KEPT)]}
    return {k: i for k, i in instances.items() if k not in drop}


def end_orphans(
    instances: Mapping[str, JourneyInstance], journeys: Mapping[str, Journey], now: datetime
) -> dict[str, JourneyInstance]:
    """Live instances whose journey file is gone end with that reason (never a crash or a retry)."""
    return {
        k: (ended(i, now, "journey_removed") if i.live and i.journey not in journeys else i)
        for k, i in instances.items()
    }


# ------------------------------------------------------------------------------------ entry


def _entering(
    journey: Journey,
    instances: Mapping[str, JourneyInstance],
    ctx: Context,
    facts: dict[str, Value],
    entered_segment: str | None,
    entries: frozenset[str] | None,
) -> tuple[str, int] | None:
    """(entry key, run) when the user enters now, else None."""
    spec = journey.spec.entry
    now = ctx.now
    key = ""
    since: datetime | None = None
    if journey.entry is not None:
        if not _entry_holds(journey, facts, entries):
            return None
    elif spec.segment is not None:
        if entered_segment != spec.segment:
            return None
    elif spec.event is not None:
        since = last_done(ctx, spec.event.name, journey.entry_where)
        if since is None or (now - since).total_seconds() > JOURNEY_EVENT_ENTRY_SECONDS:
            return None
        if spec.event.key is not None:
            key = _key_value(ctx, spec.event.name, spec.event.key)
            if not key:
                return None
    previous = [i for i in instances.values() if i.journey == journey.id and i.key == key]
    if any(i.live for i in previous):
        return None  # one instance per user, journey and key
    if previous:
        last = max(previous, key=lambda i: i.run)
        re_entry = journey.spec.re_entry
        if re_entry == "once":
            return None
        if since is not None and since <= last.entered_at:
            return None  # the event that entered the last one
        if journey.entry is not None and re_entry == "every_time" and not last.rearmed:
            return None  # the condition that entered the last one, still holding
        if isinstance(re_entry, ReEntryAfter):
            ended = last.exited_at or last.entered_at
            if now < ended + re_entry.after:
                return None
        return key, last.run + 1
    return key, 0


def _entry_holds(journey: Journey, facts: dict[str, Value], entries: frozenset[str] | None) -> bool:
    assert journey.entry is not None
    return journey.id in entries if entries is not None else holds_in(journey.entry, facts)


def _key_value(ctx: Context, event: str, prop: str) -> str:
    stats = ctx.user.events.get(event)
    props = stats.props if stats else None
    if props is None:
        return ""
    stamped = props.last.get(prop)
    if stamped is not None and stamped.v is not None:
        return str(stamped.v)
    return props.newest_value(prop) or ""


def _enter(journey: Journey, user_id: str, key: str, run: int, now: datetime) -> JourneyInstance:
    held = in_group(f"journey:{journey.id}", user_id, journey.spec.holdout)
    goal = journey.spec.goal
    if held:
        # Held out: sent nothing, but followed to the end of the goal window, for lift.
        wake = now + goal.within if goal is not None else None
        instance = JourneyInstance(
            journey=journey.id,
            key=key,
            run=run,
            step=None,
            step_since=now,
            entered_at=now,
            variant=HOLDOUT,
            wake_at=wake,
            decided=(),
        )
        return instance if goal is not None else ended(instance, now, "holdout")
    return JourneyInstance(
        journey=journey.id,
        key=key,
        run=run,
        step=journey.first,
        step_since=now,
        entered_at=now,
        path=(journey.first,),
        decided=(),
    )


def blocked_end(instance: JourneyInstance, now: datetime) -> JourneyInstance:
    """The instance ended because a send was blocked and the journey says exit."""
    return ended(instance, now, "blocked") if instance.live else instance
