"""Journeys in the report, as plain values: each journey's flow (users per step and per edge) and its
experiment (entered, each step reached, converted within the window, per variant or split path and
the holdout, compared with the always-valid interval of nudge.domain.experiment).

From the users' journey instances (SegmentRecord.journeys: the path each took, its variant, how it
ended) and the ledger (how many of a send step's users were really sent it).

Units are users. A user's first instance of a journey is their exposure for the experiment (later
re-entries are not independent of it); every instance counts in the flow. Conversion is what the
engine recorded within the window, and, for a goal that is an event without `where`, also the goal
event seen in the user's usage within the window: an instance that completed or exited before its
window closed is not followed by the engine, while a held-out one is, so judging both from the
usage keeps the arms comparable. Instances whose window has not closed are pending, left out.
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from nudge.domain.experiment import Arm, Comparison, against
from nudge.domain.flow import Flow, FlowEdge, FlowNode
from nudge.domain.lift import reached
from nudge.model.calendar import week_key
from nudge.model.durations import format_duration
from nudge.model.journeys import HOLDOUT, JourneyInstance
from nudge.model.ledger import LedgerEntry
from nudge.model.state import UserState
from nudge.rulebook.journeys import Journey
from nudge.rulebook.rule_specs import GoalSpec

ENTERED = "entered"
HELD_OUT_NODE = "held_out"
ALL_TREATED = "treated"  # the arm name of a journey's entrants when it has no variants or paths
ENDINGS = {
    "converted": "converted",
    "exited": "exited",
    "completed": "completed",
    "step_removed": "step removed",
    "journey_removed": "journey removed",
    "blocked": "blocked",
    HOLDOUT: "held out to the end",
}


@dataclass(frozen=True)
class JourneyArm:
    name: str  # a variant or split path, "holdout", or "treated" when the journey has neither
    entered: int  # users
    reached: dict[str, int]  # step -> users who got there, in step order
    converted: int  # of the users whose window closed, converted within it
    closed: int  # users whose conversion window has closed: the rate's denominator
    pending: int  # users still within their window


@dataclass(frozen=True)
class JourneyResult:
    journey: str
    goal: str  # the goal in words, "" without one
    steps: list[str]
    arms: list[JourneyArm]
    comparisons: list[Comparison] = field(default_factory=list)  # against the holdout, then variants
    live: int = 0  # instances not ended


def _goal_words(journey: Journey) -> str:
    goal = journey.spec.goal
    if goal is None:
        return ""
    what = f"event {goal.event}" if goal.event else "its condition"
    # In the file's words ("21d" reads 21 days), not timedelta's "21 days, 0:00:00".
    days, rest = divmod(goal.within, timedelta(days=1))
    span = f"{days} day{'s' if days != 1 else ''}" if not rest else format_duration(goal.within)
    return f"{what} within {span}"


def _event_goal(journey: Journey) -> GoalSpec | None:
    goal = journey.spec.goal
    if goal is None or goal.event is None or goal.where is not None:
        return None
    return GoalSpec(event=goal.event, within=goal.within)


def _converted(
    journey: Journey, instance: JourneyInstance, user: UserState | None, meaningful: frozenset[str]
) -> bool:
    if instance.converted_at is not None:
        return True
    goal = _event_goal(journey)
    return (
        goal is not None and user is not None and reached(goal, user, None, instance.entered_at, meaningful)
    )


def _arm_name(instance: JourneyInstance) -> str:
    return instance.variant or ALL_TREATED


def journey_instances(
    records: Mapping[str, Iterable[JourneyInstance]], journey: str
) -> list[tuple[str, JourneyInstance]]:
    """(user, instance) of one journey, each user's in the order they entered."""
    return sorted(
        ((user, i) for user, kept in records.items() for i in kept if i.journey == journey),
        key=lambda pair: (pair[0], pair[1].entered_at),
    )


def journey_flow(
    journey: Journey, instances: list[tuple[str, JourneyInstance]], entries: Iterable[LedgerEntry]
) -> Flow:
    """Users per step and per edge, from each instance's path and how it ended; a send step's note
    says how many of them were really sent it (the ledger: guardrails may hold a send back)."""
    nodes: dict[str, set[str]] = defaultdict(set)
    edges: dict[tuple[str, str], set[str]] = defaultdict(set)
    for user, instance in instances:
        nodes[ENTERED].add(user)
        if instance.variant == HOLDOUT:
            nodes[HELD_OUT_NODE].add(user)
            edges[(ENTERED, HELD_OUT_NODE)].add(user)
            last = HELD_OUT_NODE
        else:
            path = list(instance.path) or ([instance.step] if instance.step else [])
            if path and path[0] == journey.first:
                edges[(ENTERED, path[0])].add(user)
            for at in path:
                nodes[at].add(user)
            for a, b in itertools.pairwise(path):
                edges[(a, b)].add(user)
            last = path[-1] if path else ENTERED
        if instance.reason is not None:
            nodes[f"end_{instance.reason}"].add(user)
            edges[(last, f"end_{instance.reason}")].add(user)
    sent: dict[str, set[str]] = defaultdict(set)
    for entry in entries:
        d = entry.decision
        if d.journey == journey.id and d.step and entry.outcome == "send" and entry.status == "sent":
            sent[d.step].add(d.user)
    here: dict[str, set[str]] = defaultdict(set)
    for user, instance in instances:
        if instance.live and instance.step:
            here[instance.step].add(user)
    out = [FlowNode(ENTERED, "entered", len(nodes[ENTERED]))]
    if HELD_OUT_NODE in nodes:
        out.append(FlowNode(HELD_OUT_NODE, "held out", len(nodes[HELD_OUT_NODE])))
    for step_id, step in journey.steps.items():
        notes = []
        if step.kind in ("send", "escalate"):
            notes.append(f"{len(sent[step_id])} sent")
        if here[step_id]:
            notes.append(f"{len(here[step_id])} here now")
        out.append(FlowNode(step_id, f"{step_id} ({step.kind})", len(nodes[step_id]), "; ".join(notes)))
    # A step in a path but no longer in the file (removed since): shown, so its edges stay drawn.
    for gone in sorted(n for n in nodes if n not in journey.steps and n not in (ENTERED, HELD_OUT_NODE)):
        if not gone.startswith("end_"):
            out.append(FlowNode(gone, f"{gone} (removed)", len(nodes[gone])))
    for reason, label in ENDINGS.items():
        if nodes.get(f"end_{reason}"):
            out.append(FlowNode(f"end_{reason}", label, len(nodes[f"end_{reason}"])))
    lines = tuple(FlowEdge(a, b, len(users)) for (a, b), users in sorted(edges.items()))
    return Flow(f"journey:{journey.id}", f"journey {journey.id}: {journey.spec.kind}", tuple(out), lines)


def journey_result(
    journey: Journey,
    instances: list[tuple[str, JourneyInstance]],
    users: Mapping[str, UserState],
    meaningful: frozenset[str],
    now: datetime,
) -> JourneyResult:
    """Per arm (variant, split path, holdout): entered, each step reached, converted within the
    window; each arm against the holdout and the variants against the first, always-valid."""
    first: dict[str, JourneyInstance] = {}
    for user, instance in instances:
        first.setdefault(user, instance)
    goal = journey.spec.goal
    by_arm: dict[str, list[tuple[str, JourneyInstance]]] = defaultdict(list)
    for user, instance in first.items():
        by_arm[_arm_name(instance)].append((user, instance))
    steps = list(journey.steps)
    arms: list[JourneyArm] = []
    for name in sorted(by_arm, key=lambda n: (n == HOLDOUT, n)):
        members = by_arm[name]
        reach = {s: sum(1 for _, i in members if s in i.path or i.step == s) for s in steps}
        closed = [(u, i) for u, i in members if goal is not None and i.entered_at + goal.within <= now]
        hits = sum(1 for u, i in closed if _converted(journey, i, users.get(u), meaningful))
        arms.append(JourneyArm(name, len(members), reach, hits, len(closed), len(members) - len(closed)))
    comparisons: list[Comparison] = []
    if goal is not None and arms:
        started = min(i.entered_at for i in first.values())
        pending = sum(a.pending for a in arms)
        tested = [Arm(a.name, a.closed, a.converted) for a in arms]
        treated = [arm for arm in tested if arm.name != HOLDOUT]
        if len(tested) > len(treated) and treated:
            comparisons += against(tested, HOLDOUT, started=started, now=now, pending=pending)
        if len(treated) > 1:
            comparisons += against(treated, treated[0].name, started=started, now=now, pending=pending)
    live = sum(1 for _, i in instances if i.live)
    return JourneyResult(journey.id, _goal_words(journey), steps, arms, comparisons, live)


def journey_reports(
    journeys: list[Journey],
    records: Mapping[str, Iterable[JourneyInstance]],
    users: Mapping[str, UserState],
    entries: Iterable[LedgerEntry],
    meaningful: frozenset[str],
    now: datetime,
) -> tuple[list[Flow], list[JourneyResult]]:
    """Each journey anyone entered, in the rules' order: its flow and its experiment."""
    kept = [e for e in entries if e.decision.journey]
    flows: list[Flow] = []
    results: list[JourneyResult] = []
    for journey in journeys:
        mine = journey_instances(records, journey.id)
        if not mine:
            continue
        flows.append(journey_flow(journey, mine, kept))
        results.append(journey_result(journey, mine, users, meaningful, now))
    return flows, results


@dataclass(frozen=True)
class JourneyWeek:
    week: str  # ISO week
    entered: int  # instances that entered in it (held out included)
    converted: int  # instances converted in it
    ended: dict[str, int]  # other endings in it: reason -> instances (exited, completed, holdout...)


@dataclass(frozen=True)
class JourneyTally:
    """A journey over a backtest's instances: how many entered, reached each step, converted,
    ended otherwise and why, are still at a step, and all of it per ISO week."""

    journey: str
    entered: int
    held_out: int
    reached: dict[str, int]  # step -> instances that got there
    converted: int
    ended: dict[str, int]  # reason (other than converted) -> instances
    at_step: dict[str, int]  # step -> instances still there at the end
    weeks: list[JourneyWeek]


def journey_tally(journey: Journey, instances: list[tuple[str, JourneyInstance]]) -> JourneyTally:
    all_of = [i for _, i in instances]
    entries = {week_key(i.entered_at.date()) for i in all_of}
    rows: list[JourneyWeek] = []
    ends = [(week_key(i.exited_at.date()), i) for i in all_of if i.exited_at is not None]
    for week in sorted({*entries, *(w for w, _ in ends)}):
        mine = [i for w, i in ends if w == week]
        ended = Counter(str(i.reason) for i in mine if i.reason != "converted")
        rows.append(
            JourneyWeek(
                week,
                sum(1 for i in all_of if week_key(i.entered_at.date()) == week),
                sum(1 for i in mine if i.reason == "converted"),
                dict(sorted(ended.items())),
            )
        )
    return JourneyTally(
        journey=journey.id,
        entered=len(all_of),
        held_out=sum(1 for i in all_of if i.variant == HOLDOUT),
        reached={s: sum(1 for i in all_of if s in i.path) for s in journey.steps},
        converted=sum(1 for i in all_of if i.reason == "converted"),
        ended=dict(
            sorted(Counter(str(i.reason) for i in all_of if i.reason not in (None, "converted")).items())
        ),
        at_step=dict(Counter(i.step for i in all_of if i.live and i.step)),
        weeks=rows,
    )
