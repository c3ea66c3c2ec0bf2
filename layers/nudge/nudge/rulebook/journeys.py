"""A journey (rules/journeys/*.yaml) as the engine (nudge.domain.journeys) runs it: its steps, their
conditions parsed and successors resolved. Loading and checking the files is
nudge.rulebook.journey_loader's, so a rule set read from its snapshot imports no parser."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from nudge.conditions.facts import Where
from nudge.conditions.tree import Node
from nudge.rulebook.journey_specs import END, JourneyFile, StepSpec
from nudge.rulebook.rule_specs import Trigger

JOURNEYS_DIR = "journeys"
WAITING = frozenset({"wait", "wait_until"})


@dataclass(frozen=True)
class Step:
    """One step, its conditions parsed and its successors resolved (END: the journey ends)."""

    id: str
    kind: str
    spec: StepSpec
    next: str
    # wait_until: the event's filter, or the condition; branch: (condition, step) in order, then else.
    where: Where = None
    condition: Node | None = None
    cases: tuple[tuple[Node, str], ...] = ()
    otherwise: str = END

    def successors(self) -> list[str]:
        if self.kind == "branch":
            return [s for _, s in self.cases] + [self.otherwise]
        if self.kind == "split":
            return [p.step for p in self.spec.split or []]
        if self.kind == "wait_until":
            spec = self.spec.wait_until
            assert spec is not None
            return [spec.then or self.next, spec.on_timeout or self.next]
        return [self.next]


@dataclass(frozen=True)
class Journey:
    spec: JourneyFile
    file: str
    steps: dict[str, Step]
    first: str
    entry: Node | None = None
    entry_where: Where = None
    goal: Node | None = None
    goal_where: Where = None
    exits: tuple[Node, ...] = ()
    conditions: tuple[Node, ...] = field(default=(), compare=False)
    # Set on the one-step journey a trigger compiles into (nudge.rulebook.trigger_journeys): its
    # decisions are the trigger's (ids per cooldown window), and it keeps no instance.
    trigger: Trigger | None = field(default=None, compare=False)

    @cached_property
    def id(self) -> str:  # read for every program at every evaluation: kept once read
        return self.spec.id
