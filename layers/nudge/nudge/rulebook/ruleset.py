"""All of rules/ loaded and checked against each other: what Lambdas, CLI and local stack use.
(No engine is built here: nudge.domain.engine compiles the condition groups on first evaluation.)

Files: tracking-plan.yaml, milestones.yaml (nudge.rulebook.plan), segments.yaml, scoring.yaml,
triggers.yaml and templates/*.yaml. Every problem in every file is collected and reported as
file:line: message, so `nudge rules lint` shows them all at once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from nudge.conditions.facts import SCORE_FACT_KEYS
from nudge.conditions.tree import (
    All,
    Catalog,
    Check,
    ConditionGroup,
    Fact,
    NamedCondition,
    Node,
    Subject,
    checks_in,
)
from nudge.model.durations import Duration
from nudge.rulebook.conditions import Parser
from nudge.rulebook.guardrails import GUARDRAILS_FILE, Guardrails, load_guardrails
from nudge.rulebook.journeys import Journey, load_journeys
from nudge.rulebook.plan import NAME_PATTERN, TrackingPlan, load_plan
from nudge.rulebook.templates import TEMPLATES_DIR, TemplateFile, TemplateRef, check_refs, load_templates
from nudge.rulebook.yamlfile import (
    RuleFileError,
    RuleProblem,
    YamlDoc,
    did_you_mean,
    display_path,
    load_yaml,
    validate,
)

SEGMENTS_FILE = "segments.yaml"
SCORING_FILE = "scoring.yaml"
TRIGGERS_FILE = "triggers.yaml"
ESCALATE = "escalate__"

Kind = Literal["onboarding", "rescue", "upgrade", "escalation"]
Action = Literal["email", "push", "sms", "escalate"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SegmentSpec(_Strict):
    id: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    when: Any = Field(
        default=None, description="Condition; leave out on the last segment to catch everyone else."
    )


class SegmentsFile(_Strict):
    segments: list[SegmentSpec] = Field(
        min_length=1, description="Ordered: a user is in the first that matches."
    )


class SignalSpec(_Strict):
    id: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    when: Any
    points: float


class Bands(_Strict):
    high: float
    mid: float


class ScoreSpec(_Strict):
    signals: list[SignalSpec] = Field(min_length=1)
    bands: Bands


class ScoringFile(_Strict):
    user: ScoreSpec
    account: ScoreSpec


class GoalSpec(_Strict):
    """What a rule's message aims at, for lift: one of event, milestone or account_trait, reached
    within `within` of the decision."""

    event: str | None = Field(
        default=None, description="An event of the tracking plan, or any (any meaningful one)."
    )
    milestone: str | None = None
    account_trait: str | None = Field(default=None, description="The account's trait set anew, e.g. plan.")
    within: Duration


class TriggerSpec(_Strict):
    id: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    kind: Kind
    when: Any
    action: Action
    template: str
    priority: int = Field(default=50, ge=1, le=100, description="Higher wins when several fire together.")
    cooldown: Duration = Field(default=timedelta(days=7), description="Not again for this long after firing.")
    once: bool = Field(default=False, description="At most once per user, ever (no re-entry).")
    escalate_when: Any = Field(default=None, description="Also escalate to customer success when this holds.")
    goal: GoalSpec | None = Field(
        default=None, description="What the message aims at (for lift against the holdout)."
    )
    next_step: str = Field(
        default="", description="For an escalation: what customer success should do next (in the case)."
    )
    # Guardrail choices per rule (nudge.guardrails).
    journey: str | None = Field(
        default=None, pattern=NAME_PATTERN, description="Caps per journey (guardrails.yaml); default: kind."
    )
    topic: str | None = Field(
        default=None, pattern=NAME_PATTERN, description="What a user can unsubscribe from; default: kind."
    )
    transactional: bool = Field(
        default=False,
        description=(
            "Not marketing: exempt from marketing consent, unsubscribes, caps, holdouts and quiet "
            "hours; its email gets no unsubscribe footer or List-Unsubscribe, and is tagged transactional."
        ),
    )
    holdout: float = Field(
        default=0.0, ge=0, le=100, description="Percent of eligible users held out, for lift."
    )
    quiet_hours: Literal["defer", "drop"] | None = Field(
        default=None,
        description="In the user's quiet hours: defer to their end, or drop (default: guardrails.yaml).",
    )


class TriggersFile(_Strict):
    triggers: list[TriggerSpec]


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
class Trigger:
    spec: TriggerSpec
    condition: Node
    escalate_when: Node | None

    @property
    def id(self) -> str:
        return self.spec.id


@dataclass(frozen=True)
class RuleSet:
    plan: TrackingPlan
    segments: list[Segment]
    user_score: Score
    account_score: Score
    triggers: list[Trigger]
    templates: dict[str, TemplateFile]
    # Three durable_rules passes per evaluation: scores, then segments (may use scores), then
    # triggers and escalations (may use segment and scores). Escalations are named escalate__<id>.
    score_rules: ConditionGroup
    segment_rules: ConditionGroup
    trigger_rules: ConditionGroup
    guardrails: Guardrails
    # When no segment reads a score or band, segments are matched in the scores' pass (one
    # durable_rules call fewer) and segment_rules is empty.
    segments_with_scores: bool = False

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
    # rules/journeys/*.yaml (nudge.rulebook.journeys), run by nudge.domain.journeys.
    journeys: list[Journey] = field(default_factory=list)

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


def journey_templates(journey: Journey) -> list[str]:
    """Every template a journey's sends may use (variants included)."""
    names: list[str] = []
    for step in journey.steps.values():
        send = step.spec.send
        if send is not None:
            names += [send.template] if send.template else [v.template for v in send.variants or []]
    return list(dict.fromkeys(names))


def journey_entry_condition(journey: Journey) -> Node:
    """What a journey's templates may read of `trigger`: the event it is entered on (an event
    entry), the events its entry condition says the user did, or none (a segment entry)."""
    if journey.entry is not None:
        return journey.entry
    event = journey.spec.entry.event
    if event is None:
        return All(())
    subject = Subject(event.name, journey.entry_where)
    return Check(Fact("journey_entry", f"entered on {event.name}", _no_value, subject=subject), "eq", 0)


def _no_value(ctx: object) -> int:
    return 0


def journey_rule_spec(journey: Journey) -> TriggerSpec:
    """A journey as the guardrails and channels see a rule: its kind (topic, caps), priority, no
    cooldown (its waits pace it) and no rule holdout (the journey holds out at entry)."""
    steps = list(journey.steps.values())
    sends = [s.spec.send.channel for s in steps if s.spec.send is not None]
    escalations = [s.spec.escalate for s in steps if s.spec.escalate is not None]
    return TriggerSpec(
        id=journey.id,
        description=journey.spec.description,
        kind=journey.spec.kind,
        when=None,
        action=sends[0] if sends else "escalate",
        template="",
        priority=journey.spec.priority,
        cooldown=timedelta(0),
        journey=journey.id,
        next_step=escalations[0].next_step if escalations else "",
    )


def _load(
    rules_dir: Path, name: str, model: type[BaseModel], problems: list[RuleProblem]
) -> tuple[YamlDoc, Any] | None:
    try:
        doc = load_yaml(rules_dir / name, display_path(rules_dir, name))
        return doc, validate(doc, model)
    except RuleFileError as exc:
        problems.extend(exc.problems)
        return None


def _duplicates(doc: YamlDoc, section: str, ids: list[str], problems: list[RuleProblem]) -> None:
    seen: set[str] = set()
    for index, ident in enumerate(ids):
        if ident in seen:
            problems.append(
                doc.problem((section, index, "id"), f"duplicate id '{ident}'; ids must be unique")
            )
        seen.add(ident)


def load_rules(rules_dir: Path) -> RuleSet:
    """Load, check and compile every rule file; raise RuleFileError listing every problem."""
    problems: list[RuleProblem] = []
    try:
        plan = load_plan(rules_dir)
    except RuleFileError as exc:
        problems.extend(exc.problems)
        plan = None
    refs: dict[str, list[TemplateRef]] = {}
    templates = load_templates(rules_dir, problems, refs)
    seg = _load(rules_dir, SEGMENTS_FILE, SegmentsFile, problems)
    sco = _load(rules_dir, SCORING_FILE, ScoringFile, problems)
    trg = _load(rules_dir, TRIGGERS_FILE, TriggersFile, problems)
    if plan is None or seg is None or sco is None or trg is None:
        raise RuleFileError(problems or [RuleProblem(str(rules_dir), 1, "rules could not be loaded")])

    seg_doc, seg_file = seg
    segment_ids = tuple(s.id for s in seg_file.segments)
    base = Catalog(
        events=frozenset(plan.events),
        features=frozenset(plan.features),
        milestones=frozenset(plan.milestones),
        segments=segment_ids,
        user_traits=plan.user_traits,
        account_traits=plan.account_traits,
        properties=plan.properties_of,
    )

    _duplicates(seg_doc, "segments", list(segment_ids), problems)
    seg_parser = Parser(seg_doc, replace(base, allow_segment=False), problems)
    segments: list[Segment] = []
    for index, spec in enumerate(seg_file.segments):
        if spec.when is None:
            if index != len(seg_file.segments) - 1:
                problems.append(
                    seg_doc.problem(
                        ("segments", index, "id"),
                        f"segment '{spec.id}' has no when: only the last "
                        "segment may catch everyone; add a condition or move it last",
                    )
                )
            segments.append(Segment(spec.id, spec.description, None))
            continue
        node = seg_parser.parse(spec.when, ("segments", index, "when"))
        if node is not None:
            segments.append(Segment(spec.id, spec.description, node))

    sco_doc, sco_file = sco
    scores: dict[str, Score] = {}
    for subject in ("user", "account"):
        spec_score = getattr(sco_file, subject)
        _duplicates(sco_doc, subject, [s.id for s in spec_score.signals], problems)
        parser = Parser(sco_doc, replace(base, allow_segment=False, allow_score=False), problems)
        signals = []
        for index, signal in enumerate(spec_score.signals):
            node = parser.parse(signal.when, (subject, "signals", index, "when"))
            if node is not None:
                signals.append(Signal(signal.id, signal.points, node))
        if spec_score.bands.mid > spec_score.bands.high:
            problems.append(sco_doc.problem((subject, "bands", "mid"), "bands: mid must not be above high"))
        scores[subject] = Score(subject, signals, spec_score.bands)

    trg_doc, trg_file = trg
    _duplicates(trg_doc, "triggers", [t.id for t in trg_file.triggers], problems)
    trg_parser = Parser(trg_doc, base, problems)
    triggers: list[Trigger] = []
    for index, spec in enumerate(trg_file.triggers):
        node = trg_parser.parse(spec.when, ("triggers", index, "when"))
        escalate = (
            trg_parser.parse(spec.escalate_when, ("triggers", index, "escalate_when"))
            if spec.escalate_when is not None
            else None
        )
        if spec.template not in templates:
            problems.append(
                trg_doc.problem(
                    ("triggers", index, "template"),
                    f"unknown template '{spec.template}'"
                    + (
                        f"{hint} (or add {TEMPLATES_DIR}/{spec.template}.yaml)"
                        if (hint := did_you_mean(spec.template, templates))
                        else f"; add {TEMPLATES_DIR}/{spec.template}.yaml"
                    ),
                )
            )
        if spec.kind == "escalation" and spec.action != "escalate":
            problems.append(
                trg_doc.problem(("triggers", index, "action"), "an escalation trigger's action is escalate")
            )
        if spec.goal is not None:
            problems.extend(_goal_problems(trg_doc, ("triggers", index, "goal"), spec.goal, plan))
        if spec.cooldown < timedelta(hours=1):
            problems.append(trg_doc.problem(("triggers", index, "cooldown"), "cooldown must be at least 1h"))
        if node is not None:
            triggers.append(Trigger(spec, node, escalate))
            problems.extend(check_refs(refs.get(spec.template, []), spec.id, node, plan))

    journey_files = load_journeys(rules_dir, base, plan, templates, problems)
    for journey in journey_files:
        entered_on = journey_entry_condition(journey)
        for template in journey_templates(journey):
            problems.extend(check_refs(refs.get(template, []), journey.id, entered_on, plan))
    journeys = {t.journey or t.kind for t in trg_file.triggers} | {j.id for j in journey_files}
    marketing_email = [t.id for t in trg_file.triggers if t.action == "email" and not t.transactional]
    marketing_email += [
        j.id
        for j in journey_files
        if any(s.kind == "send" and s.spec.send and s.spec.send.channel == "email" for s in j.steps.values())
    ]
    guardrails = load_guardrails(rules_dir, journeys, problems, marketing_email)
    if problems or guardrails is None:
        raise RuleFileError(problems)
    score_rules = [
        NamedCondition(f"{score.subject}__{signal.id}", signal.condition)
        for score in scores.values()
        for signal in score.signals
    ]
    segment_rules = [NamedCondition(s.id, s.condition) for s in segments if s.condition]
    merged = not any(
        check.fact.key in SCORE_FACT_KEYS for rule in segment_rules for check in checks_in(rule.condition)
    )
    return RuleSet(
        plan=plan,
        segments=segments,
        user_score=scores["user"],
        account_score=scores["account"],
        triggers=triggers,
        templates=templates,
        score_rules=ConditionGroup("scores", score_rules + (segment_rules if merged else [])),
        segment_rules=ConditionGroup("segments", [] if merged else segment_rules),
        segments_with_scores=merged,
        guardrails=guardrails,
        trigger_rules=ConditionGroup(
            "triggers",
            [NamedCondition(t.id, t.condition) for t in triggers]
            + [
                NamedCondition(ESCALATE + t.id, t.escalate_when)
                for t in triggers
                if t.escalate_when is not None
            ],
        ),
        journeys=journey_files,
        files=[
            display_path(rules_dir, n)
            for n in (
                "tracking-plan.yaml",
                "milestones.yaml",
                SEGMENTS_FILE,
                SCORING_FILE,
                TRIGGERS_FILE,
                GUARDRAILS_FILE,
            )
        ]
        + [j.file for j in journey_files],
    )


def _goal_problems(
    doc: YamlDoc, loc: tuple[str | int, ...], goal: GoalSpec, plan: TrackingPlan
) -> list[RuleProblem]:
    named = [k for k in ("event", "milestone", "account_trait") if getattr(goal, k) is not None]
    if len(named) != 1:
        return [doc.problem(loc, "a goal names exactly one of event, milestone or account_trait")]
    kind = named[0]
    value = str(getattr(goal, kind))
    known: dict[str, Iterable[str]] = {
        "event": [*plan.events, "any"],
        "milestone": plan.milestones,
        "account_trait": plan.account_traits,
    }
    if value in known[kind]:
        return []
    word = kind.replace("_", " ")
    return [doc.problem((*loc, kind), f"unknown {word} '{value}'{did_you_mean(value, known[kind])}")]


def all_conditions(rules: RuleSet) -> list[Node]:
    nodes: list[Node] = [s.condition for s in rules.segments if s.condition is not None]
    nodes += [s.condition for s in rules.user_score.signals]
    nodes += [s.condition for s in rules.account_score.signals]
    nodes += [t.condition for t in rules.triggers]
    nodes += [t.escalate_when for t in rules.triggers if t.escalate_when is not None]
    nodes += [node for journey in rules.journeys for node in journey.conditions]
    return nodes
