"""The rule set: all of rules/, checked, as Lambdas, CLI and local stack run it. Loading it from the
files is nudge.rulebook.loader's (`load_rules`); a Lambda reads the one `sam build` checked
(nudge.rulebook.snapshot), which needs these types alone, not the YAML, the parsers or Jinja.
(No engine is built here: nudge.domain.engine compiles the condition groups on first evaluation.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

from nudge.conditions.tree import (
    ConditionGroup,
    NamedCondition,
    Node,
    checks_in,
)
from nudge.rulebook import locales
from nudge.rulebook.destinations import Destinations
from nudge.rulebook.guardrails import Guardrails
from nudge.rulebook.journey_rules import journey_rule_spec
from nudge.rulebook.journeys import Journey
from nudge.rulebook.plan import TrackingPlan
from nudge.rulebook.rule_specs import (
    SCORING_FILE as SCORING_FILE,
)
from nudge.rulebook.rule_specs import (
    SEGMENTS_FILE as SEGMENTS_FILE,
)
from nudge.rulebook.rule_specs import (
    TRIGGERS_FILE as TRIGGERS_FILE,
)
from nudge.rulebook.rule_specs import (
    Action as Action,
)
from nudge.rulebook.rule_specs import (
    Bands as Bands,
)
from nudge.rulebook.rule_specs import (
    ChannelChoice as ChannelChoice,
)
from nudge.rulebook.rule_specs import (
    GoalSpec as GoalSpec,
)
from nudge.rulebook.rule_specs import (
    Kind as Kind,
)
from nudge.rulebook.rule_specs import (
    ScoreSpec as ScoreSpec,
)
from nudge.rulebook.rule_specs import (
    ScoringFile as ScoringFile,
)
from nudge.rulebook.rule_specs import (
    SegmentsFile as SegmentsFile,
)
from nudge.rulebook.rule_specs import (
    SegmentSpec as SegmentSpec,
)
from nudge.rulebook.rule_specs import (
    SignalSpec as SignalSpec,
)
from nudge.rulebook.rule_specs import (
    Trigger as Trigger,
)
from nudge.rulebook.rule_specs import (
    TriggersFile as TriggersFile,
)
from nudge.rulebook.rule_specs import (
    TriggerSpec as TriggerSpec,
)
from nudge.rulebook.templates import TemplateFile
from nudge.rulebook.trigger_journeys import one_step_journey


@dataclass(frozen=True)
class Segment:
    id: str
    description: str
    condition: Node | None  # None: everyone (the catch-all)


@dataclass(frozen=True)
class Signal:
    id: str
    points: float
    condition: Node


@dataclass(frozen=True)
class Score:
    subject: str
    signals: list[Signal]
    bands: Bands

    @cached_property
    def _points_by_name(self) -> dict[str, float]:
        return {f"{self.subject}__{s.id}": s.points for s in self.signals}

    def points(self, fired: list[str]) -> float:
        """The score from the names fired in the scoring ruleset (signals are named subject__id)."""
        by_name = self._points_by_name
        return sum(by_name.get(name, 0.0) for name in fired)

    def band(self, score: float) -> str:
        return "high" if score >= self.bands.high else "mid" if score >= self.bands.mid else "low"


@dataclass(frozen=True)
class RuleSet:
    plan: TrackingPlan
    segments: list[Segment]
    user_score: Score
    account_score: Score
    triggers: list[Trigger]
    templates: dict[str, TemplateFile]
    # Three durable_rules passes per evaluation: scores, then segments (may use scores), then the
    # entries (`entry_rules`, may use segment and scores).
    score_rules: ConditionGroup
    segment_rules: ConditionGroup
    guardrails: Guardrails
    # When no segment reads a score or band, segments are matched in the scores' pass (one
    # durable_rules call fewer) and segment_rules is empty.
    segments_with_scores: bool = False
    # Each template's versions by locale tag (templates/<name>.<locale>.yaml; nudge.rulebook.locales).
    versions: dict[str, dict[str, TemplateFile]] = field(default_factory=dict)

    def template_for(self, name: str, wanted: Sequence[str | None]) -> tuple[TemplateFile, str]:
        """The version of template `name` for the first of the user's locales (their trait, then
        their SDK's context) that has one, else the default; and the locale to format it in."""
        by_tag = self.versions.get(name, {})
        tag = locales.pick(by_tag, wanted)
        template = by_tag[tag] if tag is not None else self.templates[name]
        return template, locales.formatting_locale(tag, wanted)

    @cached_property
    def trigger_by_id(self) -> dict[str, Trigger]:
        return {t.id: t for t in self.triggers}

    @cached_property
    def segment_ids(self) -> frozenset[str]:
        return frozenset(s.id for s in self.segments)

    @cached_property
    def reads_account_usage(self) -> bool:
        """Whether any rule reads the account's rollup (active users, their trend)."""
        return any(
            check.fact.key.startswith("account__active_users")
            for node in all_conditions(self)
            for check in checks_in(node)
        )

    @cached_property
    def catch_all(self) -> str | None:
        return next((s.id for s in self.segments if s.condition is None), None)

    files: list[str] = field(default_factory=list)
    destinations: Destinations = field(default_factory=Destinations)
    # rules/journeys/*.yaml (nudge.rulebook.journeys).
    journeys: list[Journey] = field(default_factory=list)

    @cached_property
    def programs(self) -> list[Journey]:
        """What the engine (nudge.domain.journeys) runs: each trigger compiled into a one-step
        journey (nudge.rulebook.trigger_journeys), then the journeys. Derived, so a rule set
        changed with dataclasses.replace (tests) runs what it holds."""
        file = next((f for f in self.files if f.endswith(TRIGGERS_FILE)), TRIGGERS_FILE)
        return [one_step_journey(t, file) for t in self.triggers] + self.journeys

    @cached_property
    def entry_rules(self) -> ConditionGroup:
        """The entries pass: every program's `when` entry (a trigger's condition), named by its id."""
        return ConditionGroup(
            "entries", [NamedCondition(p.id, p.entry) for p in self.programs if p.entry is not None]
        )

    @cached_property
    def journey_by_id(self) -> dict[str, Journey]:
        return {j.id: j for j in self.journeys}

    @cached_property
    def spec_by_rule(self) -> dict[str, TriggerSpec]:
        """What the guardrails and the channels read of a decision's rule: a trigger's spec, or
        a journey's as one (its sends paced by its own waits: no cooldown)."""
        specs = {t.id: t.spec for t in self.triggers}
        specs.update({j.id: journey_rule_spec(j) for j in self.journeys})
        return specs


def all_conditions(rules: RuleSet) -> list[Node]:
    nodes: list[Node] = [s.condition for s in rules.segments if s.condition is not None]
    nodes += [s.condition for s in rules.user_score.signals]
    nodes += [s.condition for s in rules.account_score.signals]
    nodes += [t.condition for t in rules.triggers]
    nodes += [t.escalate_when for t in rules.triggers if t.escalate_when is not None]
    nodes += [node for journey in rules.journeys for node in journey.conditions]
    return nodes
