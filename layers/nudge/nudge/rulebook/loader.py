"""All of rules/ loaded and checked against each other (`load_rules`): what the CLI, the local
stack and a Lambda without a valid snapshot use. The rule set's types are nudge.rulebook.ruleset's;
this module holds the loading alone (YAML, the condition parsers, Jinja), so a function reading the
snapshot (nudge.rulebook.snapshot) never imports it.

Files: tracking-plan.yaml, milestones.yaml (nudge.rulebook.plan), segments.yaml, scoring.yaml,
triggers.yaml, destinations.yaml, guardrails.yaml, templates/*.yaml and journeys/*.yaml. Every
problem in every file is collected and reported as file:line: message, so `nudge rules lint` shows
them all at once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from nudge.conditions.facts import SCORE_FACT_KEYS
from nudge.conditions.tree import (
    Catalog,
    ConditionGroup,
    NamedCondition,
    checks_in,
)
from nudge.rulebook.conditions import Parser
from nudge.rulebook.destinations import Destinations, load_destinations
from nudge.rulebook.guardrails import GUARDRAILS_FILE, load_guardrails
from nudge.rulebook.journey_loader import load_journeys
from nudge.rulebook.journey_rules import journey_entry_condition, journey_templates
from nudge.rulebook.plan import TrackingPlan, load_plan
from nudge.rulebook.rule_specs import (
    SCORING_FILE,
    SEGMENTS_FILE,
    TRIGGERS_FILE,
    GoalSpec,
    ScoringFile,
    SegmentsFile,
    Trigger,
    TriggersFile,
    TriggerSpec,
)
from nudge.rulebook.ruleset import RuleSet, Score, Segment, Signal
from nudge.rulebook.template_loader import check_refs, load_templates
from nudge.rulebook.templates import TEMPLATES_DIR, TemplateFile, TemplateRef
from nudge.rulebook.yamlfile import (
    RuleFileError,
    RuleProblem,
    YamlDoc,
    did_you_mean,
    display_path,
    load_yaml,
    validate,
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
    versions: dict[str, dict[str, TemplateFile]] = {}
    templates = load_templates(rules_dir, problems, refs, versions, plan)
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
    destinations = load_destinations(rules_dir, problems)
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
        template = templates.get(spec.template)
        in_app = template.in_app if template is not None else None
        if in_app is not None and in_app.survey is not None and spec.action != "in_app":
            problems.append(
                trg_doc.problem(
                    ("triggers", index, "action"),
                    f"template '{spec.template}' is a survey, which only the in-app channel can ask; "
                    "set action: in_app",
                )
            )
        if spec.kind == "escalation" and spec.action != "escalate":
            problems.append(
                trg_doc.problem(("triggers", index, "action"), "an escalation trigger's action is escalate")
            )
        problems.extend(_destination_problems(trg_doc, index, spec, destinations))
        if spec.goal is not None:
            problems.extend(_goal_problems(trg_doc, ("triggers", index, "goal"), spec.goal, plan))
        if spec.cooldown < timedelta(hours=1):
            problems.append(trg_doc.problem(("triggers", index, "cooldown"), "cooldown must be at least 1h"))
        if node is not None:
            triggers.append(Trigger(spec, node, escalate))
            problems.extend(check_refs(refs.get(spec.template, []), spec.id, node, plan))

    journey_files = load_journeys(rules_dir, base, plan, templates, problems)
    trigger_ids = {t.id for t in triggers}
    problems.extend(
        RuleProblem(j.file, 1, f"journey id '{j.id}' is also a trigger's id ({TRIGGERS_FILE}); rename one")
        for j in journey_files
        if j.id in trigger_ids
    )
    for journey in journey_files:
        entered_on = journey_entry_condition(journey)
        for name in journey_templates(journey):
            problems.extend(check_refs(refs.get(name, []), journey.id, entered_on, plan))
    journeys = {t.journey or t.kind for t in trg_file.triggers} | {j.id for j in journey_files}
    marketing_email = [t.id for t in trg_file.triggers if "email" in t.channels and not t.transactional]
    marketing_email += [
        j.id
        for j in journey_files
        if any(s.kind == "send" and s.spec.send and "email" in s.spec.send.channels for s in j.steps.values())
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
    rules = RuleSet(
        plan=plan,
        segments=segments,
        user_score=scores["user"],
        account_score=scores["account"],
        triggers=triggers,
        templates=templates,
        versions=versions,
        score_rules=ConditionGroup("scores", score_rules + (segment_rules if merged else [])),
        segment_rules=ConditionGroup("segments", [] if merged else segment_rules),
        segments_with_scores=merged,
        guardrails=guardrails,
        destinations=destinations,
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
    _ = rules.programs  # each trigger compiled into its one-step journey now, at load
    return rules


def _destination_problems(
    doc: YamlDoc, index: int, spec: TriggerSpec, destinations: Destinations
) -> list[RuleProblem]:
    loc: tuple[str | int, ...] = ("triggers", index)
    if spec.action != "webhook":
        if spec.destination is not None:
            return [doc.problem((*loc, "destination"), "destination: is for action webhook only")]
        return []
    if spec.destination is None:
        return [doc.problem((*loc, "action"), "action webhook needs destination: <id of destinations.yaml>")]
    found = destinations.by_id.get(spec.destination)
    if found is None:
        hint = did_you_mean(spec.destination, destinations.by_id)
        return [doc.problem((*loc, "destination"), f"unknown destination '{spec.destination}'{hint}")]
    if found.kind != "webhook":
        return [
            doc.problem((*loc, "destination"), f"'{found.id}' is a {found.kind} destination, not a webhook")
        ]
    return []


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
