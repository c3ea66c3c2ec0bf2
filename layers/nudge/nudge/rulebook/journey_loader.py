"""rules/journeys/*.yaml loaded and checked against the other rule files: the Journey the engine
(nudge.domain.journeys) runs. Every mistake is a file:line problem with a fix, never a run-time
surprise: an unknown step, event, property, template or segment; a loop with no wait in it; weights
not summing to 100; a wait_until without a timeout; a step nothing leads to; a goal that can never
be reached (an exit that holds whenever it does).

Apart from the Journey and Step types (nudge.rulebook.journeys), so that reading the rules snapshot
does not import the condition parsers (BENCHMARKS.md section 7)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from nudge.conditions.facts import Where
from nudge.conditions.tree import AnyOf, Catalog, Check, Node, Not
from nudge.rulebook.condition_specs import Where as WhereSpec
from nudge.rulebook.conditions import Parser
from nudge.rulebook.journey_specs import END, STEP_KINDS, JourneyFile, StepSpec, WaitSpec
from nudge.rulebook.journeys import JOURNEYS_DIR, WAITING, Journey, Step
from nudge.rulebook.plan import TrackingPlan
from nudge.rulebook.property_conditions import declared, parse_where
from nudge.rulebook.templates import TEMPLATES_DIR, TemplateFile
from nudge.rulebook.yamlfile import (
    Loc,
    RuleFileError,
    RuleProblem,
    YamlDoc,
    did_you_mean,
    display_path,
    load_yaml,
    validate,
)


def load_journeys(
    rules_dir: Path,
    catalog: Catalog,
    plan: TrackingPlan,
    templates: dict[str, TemplateFile],
    problems: list[RuleProblem],
) -> list[Journey]:
    """Every journey file of rules/journeys/, checked; problems collected, not raised."""
    journeys: list[Journey] = []
    seen: dict[str, str] = {}
    for path in sorted((rules_dir / JOURNEYS_DIR).glob("*.yaml")):
        name = f"{JOURNEYS_DIR}/{path.name}"
        try:
            doc = load_yaml(rules_dir / name, display_path(rules_dir, name))
            spec = validate(doc, JourneyFile)
        except RuleFileError as exc:
            problems.extend(exc.problems)
            continue
        if spec.id in seen:
            problems.append(doc.problem(("id",), f"journey id '{spec.id}' is also used by {seen[spec.id]}"))
            continue
        seen[spec.id] = doc.file
        journey = _Checker(doc, spec, catalog, plan, templates, problems).journey()
        if journey is not None:
            journeys.append(journey)
    return journeys


class _Checker:
    def __init__(
        self,
        doc: YamlDoc,
        spec: JourneyFile,
        catalog: Catalog,
        plan: TrackingPlan,
        templates: dict[str, TemplateFile],
        problems: list[RuleProblem],
    ) -> None:
        self.doc = doc
        self.spec = spec
        self.catalog = catalog
        self.plan = plan
        self.templates = templates
        self.problems = problems
        self.parser = Parser(doc, catalog, problems)
        self.before = len(problems)

    def fail(self, loc: Loc, message: str) -> None:
        self.problems.append(self.doc.problem(loc, message))

    def journey(self) -> Journey | None:
        spec = self.spec
        ids = [s.id for s in spec.steps]
        for index, ident in enumerate(ids):
            if ident == END:
                self.fail(("steps", index, "id"), f"'{END}' means the journey ends; name the step otherwise")
            elif ident in ids[:index]:
                self.fail(("steps", index, "id"), f"duplicate step id '{ident}'; step ids must be unique")
        known = set(ids)
        steps: dict[str, Step] = {}
        for index, step in enumerate(spec.steps):
            following = ids[index + 1] if index + 1 < len(ids) else END
            built = self.step(index, step, following, known)
            if built is not None:
                steps.setdefault(built.id, built)
        entry, entry_where = self.entry()
        goal, goal_where = self.goal()
        exits = tuple(
            node
            for i, e in enumerate(spec.exit)
            if (node := self.parser.parse(e.when, ("exit", i, "when"))) is not None
        )
        if len(self.problems) > self.before:
            return None
        self.graph(steps)
        self.goal_reachable(goal, exits)
        if len(self.problems) > self.before:
            return None
        conditions = tuple(
            n for n in (entry, goal, *exits, *(s.condition for s in steps.values())) if n is not None
        ) + tuple(node for s in steps.values() for node, _ in s.cases)
        return Journey(
            spec, self.doc.file, steps, ids[0], entry, entry_where, goal, goal_where, exits, conditions
        )

    # -------------------------------------------------------------------------- parts

    def event(self, name: str, loc: Loc, extra: Iterable[str] = ()) -> bool:
        known = [*self.plan.events, *extra]
        if name in known:
            return True
        hint = did_you_mean(name, known) or "; declare it in tracking-plan.yaml"
        self.fail(loc, f"unknown event '{name}'{hint}")
        return False

    def where(self, event: str, where: WhereSpec | None, loc: Loc) -> Where:
        if where is None or event == "any":
            return None
        _, parsed = parse_where(self.parser, event, where, loc)
        return parsed

    def template(self, name: str, loc: Loc) -> None:
        if name in self.templates:
            return
        hint = did_you_mean(name, self.templates)
        self.fail(
            loc,
            f"unknown template '{name}'"
            + (
                f"{hint} (or add {TEMPLATES_DIR}/{name}.yaml)"
                if hint
                else f"; add {TEMPLATES_DIR}/{name}.yaml"
            ),
        )

    def target(self, name: str, known: set[str], loc: Loc) -> None:
        if name and name != END and name not in known:
            hint = did_you_mean(name, known) or f"; name a step of this journey or '{END}'"
            self.fail(loc, f"unknown step '{name}'{hint}")

    def weights(self, weights: list[int], loc: Loc, what: str) -> None:
        if sum(weights) != 100:
            self.fail(loc, f"{what} weights add up to {sum(weights)}, not 100; make them sum to 100")

    def entry(self) -> tuple[Node | None, Where]:
        entry = self.spec.entry
        given = [k for k in ("when", "segment", "event") if getattr(entry, k) is not None]
        if len(given) != 1:
            self.fail(("entry",), "entry: give exactly one of when (a condition), segment or event")
            return None, None
        if entry.when is not None:
            return self.parser.parse(entry.when, ("entry", "when")), None
        if entry.segment is not None:
            self.parser.name("segment", entry.segment, self.catalog.segments, ("entry", "segment"))
            return None, None
        event = entry.event
        assert event is not None
        if not self.event(event.name, ("entry", "event", "name")):
            return None, None
        where = self.where(event.name, event.where, ("entry", "event"))
        if event.key is not None:
            prop = self.plan.properties_of.get(event.name, {}).get(event.key)
            if prop is None or not (prop.dimension or prop.last):
                # Names what is wrong: an undeclared property, or one not kept.
                declared(self.parser, event.name, event.key, "last", ("entry", "event", "key"))
        return None, where

    def goal(self) -> tuple[Node | None, Where]:
        goal = self.spec.goal
        if goal is None:
            return None, None
        if (goal.when is None) == (goal.event is None):
            self.fail(("goal",), "goal: give exactly one of when (a condition) or event")
            return None, None
        if goal.when is not None:
            return self.parser.parse(goal.when, ("goal", "when")), None
        assert goal.event is not None
        if not self.event(goal.event, ("goal", "event"), extra=["any"]):
            return None, None
        return None, self.where(goal.event, goal.where, ("goal",))

    def step(self, index: int, step: StepSpec, following: str, known: set[str]) -> Step | None:
        loc: Loc = ("steps", index)
        kinds = [k for k in STEP_KINDS if getattr(step, k) is not None]
        if len(kinds) != 1:
            self.fail(
                (*loc, "id"),
                f"step '{step.id}' must do exactly one of {', '.join(STEP_KINDS)}"
                + (f" (it has {', '.join(kinds)})" if kinds else ""),
            )
            return None
        kind = kinds[0]
        nxt = step.next or following
        if step.next is not None:
            self.target(step.next, known, (*loc, "next"))
        built = Step(step.id, kind, step, nxt)
        here: Loc = (*loc, kind)
        if kind == "send":
            send = step.send
            assert send is not None
            if (send.template is None) == (send.variants is None):
                self.fail(here, "send: give a template, or variants (not both)")
            for i, variant in enumerate(send.variants or []):
                self.template(variant.template, (*here, "variants", i, "template"))
            if send.variants:
                self.weights([v.weight for v in send.variants], (*here, "variants"), "variant")
            if send.template is not None:
                self.template(send.template, (*here, "template"))
        elif kind == "wait" and isinstance(step.wait, WaitSpec):
            wait = step.wait
            if (wait.until_time is None) == (wait.until_trait is None):
                self.fail(here, "wait: give a duration (3d), or one of until_time or until_trait")
            if wait.until_trait is not None:
                self.parser.name(
                    "user trait", wait.until_trait, self.catalog.user_traits, (*here, "until_trait")
                )
        elif kind == "wait_until":
            spec = step.wait_until
            assert spec is not None
            if (spec.event is None) == (spec.when is None):
                self.fail(here, "wait_until: give an event or a condition (when:), one of them")
            if spec.timeout is None:
                self.fail(
                    here,
                    "wait_until has no timeout: a user who never does it would wait forever; "
                    "add timeout: e.g. 7d (and on_timeout: the step then)",
                )
            self.target(spec.then, known, (*here, "then"))
            self.target(spec.on_timeout, known, (*here, "on_timeout"))
            if spec.event is not None and self.event(spec.event, (*here, "event"), extra=["any"]):
                return Step(step.id, kind, step, nxt, where=self.where(spec.event, spec.where, here))
            if spec.when is not None:
                return Step(step.id, kind, step, nxt, condition=self.parser.parse(spec.when, (*here, "when")))
        elif kind == "branch":
            cases: list[tuple[Node, str]] = []
            otherwise = nxt
            for i, case in enumerate(step.branch or []):
                at: Loc = (*here, i)
                if case.else_ is not None:
                    if case.when is not None or case.step is not None or i != len(step.branch or []) - 1:
                        self.fail(at, "else: stands alone, as the branch's last case")
                    self.target(case.else_, known, (*at, "else"))
                    otherwise = case.else_
                    continue
                if case.when is None or case.step is None:
                    self.fail(at, "a branch case has when: and step: (or is the last, else: STEP)")
                    continue
                self.target(case.step, known, (*at, "step"))
                node = self.parser.parse(case.when, (*at, "when"))
                if node is not None:
                    cases.append((node, case.step))
            return Step(step.id, kind, step, nxt, cases=tuple(cases), otherwise=otherwise)
        elif kind == "split":
            paths = step.split or []
            for i, path in enumerate(paths):
                self.target(path.step, known, (*here, i, "step"))
            self.weights([p.weight for p in paths], here, "split")
        elif kind == "escalate":
            assert step.escalate is not None
            self.template(step.escalate.template, (*here, "template"))
        elif kind == "update":
            assert step.update is not None
            self.parser.name("user trait", step.update.trait, self.catalog.user_traits, (*here, "trait"))
        return built

    # -------------------------------------------------------------------------- the whole

    def line(self, step: str) -> Loc:
        return ("steps", next(i for i, s in enumerate(self.spec.steps) if s.id == step), "id")

    def graph(self, steps: dict[str, Step]) -> None:
        first = self.spec.steps[0].id
        reached = {first}
        todo = [first]
        while todo:
            for nxt in steps[todo.pop()].successors():
                if nxt != END and nxt not in reached:
                    reached.add(nxt)
                    todo.append(nxt)
        for step in self.spec.steps:
            if step.id not in reached:
                self.fail(
                    ("steps", self.spec.steps.index(step), "id"),
                    f"step '{step.id}' is unreachable: no step leads to it; point a next:, then: or "
                    "branch at it, or remove it",
                )
        # A loop must pass a wait, else one evaluation would go round it forever.
        instant = {sid: s for sid, s in steps.items() if s.kind not in WAITING}
        state: dict[str, int] = {}

        def visit(sid: str, path: list[str]) -> list[str] | None:
            state[sid] = 1
            for nxt in instant[sid].successors():
                if nxt not in instant:
                    continue
                if state.get(nxt) == 1:
                    return [*path[path.index(nxt) :], nxt] if nxt in path else [sid, nxt]
                if nxt not in state:
                    found = visit(nxt, [*path, nxt])
                    if found:
                        return found
            state[sid] = 2
            return None

        for sid in instant:
            if sid not in state:
                cycle = visit(sid, [sid])
                if cycle:
                    self.fail(
                        self.line(cycle[0]),
                        f"the steps {' -> '.join(cycle)} loop without a wait; add a wait or "
                        "wait_until step inside the loop",
                    )
                    return

    def goal_reachable(self, goal: Node | None, exits: tuple[Node, ...]) -> None:
        """An exit that holds whenever the goal does (exits are checked first): nobody converts."""
        if goal is None:
            return
        wanted = signature(goal)
        for i, node in enumerate(exits):
            if signature(node) == wanted or (
                isinstance(node, AnyOf) and wanted in map(signature, node.items)
            ):
                self.fail(
                    ("goal",),
                    f"the goal can never be reached: exit {i + 1} holds whenever it does, and exits "
                    "are checked first; change the goal or that exit",
                )
                return


def signature(node: Node) -> object:
    """A condition as comparable data: the same tests in the same shape compare equal."""
    if isinstance(node, Check):
        return (node.fact.key, node.op, node.value)
    if isinstance(node, Not):
        return ("not", signature(node.item))
    return (type(node).__name__, tuple(signature(n) for n in node.items))
