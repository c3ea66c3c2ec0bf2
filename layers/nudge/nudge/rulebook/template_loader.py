"""Message templates loaded from rules/templates/*.yaml: each part parsed by Jinja, its filters and
tests checked, the event properties it reads checked against the tracking plan and the triggers
that use it (nudge.rulebook.templates says what a template may read).

Apart from the template types (nudge.rulebook.templates) so that reading the rules snapshot does not
import Jinja: the functions that do not render never need it (BENCHMARKS.md section 7).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import jinja2
from jinja2 import meta

from nudge.conditions.tree import Node, subjects_in
from nudge.model.inapp import SURVEY_EVENT
from nudge.rulebook import locales
from nudge.rulebook.plan import TrackingPlan
from nudge.rulebook.templates import PARTS, TEMPLATES_DIR, SurveySpec, TemplateFile, TemplateRef
from nudge.rulebook.yamlfile import (
    RuleFileError,
    RuleProblem,
    did_you_mean,
    display_path,
    load_yaml,
    validate,
)


def _check_template(env: jinja2.Environment, source: str) -> jinja2.nodes.Template:
    """Parse a template and check its filters and tests exist; the tree, for the other checks
    (each part is parsed once: parsing is most of what loading the rules costs a cold start).

    Jinja only notices an unknown filter when it renders the branch that uses it: at send time,
    in a Lambda. A marketer's `| upcase` must be refused at lint, like any other typo.
    """
    tree = env.parse(source)
    for node in tree.find_all((jinja2.nodes.Filter, jinja2.nodes.Test)):
        known = env.filters if isinstance(node, jinja2.nodes.Filter) else env.tests
        if node.name not in known:
            kind = "filter" if isinstance(node, jinja2.nodes.Filter) else "test"
            raise jinja2.TemplateSyntaxError(
                f"no {kind} named '{node.name}'{did_you_mean(node.name, known)}", node.lineno
            )
    return tree


def _path(node: jinja2.nodes.Node) -> tuple[str, ...] | None:
    """`a.b.c` or `a["b"].c` as ("a", "b", "c"); None for anything else."""
    parts: list[str] = []
    while True:
        if isinstance(node, jinja2.nodes.Getattr):
            parts.append(node.attr)
            node = node.node
        elif isinstance(node, jinja2.nodes.Getitem) and isinstance(node.arg, jinja2.nodes.Const):
            parts.append(str(node.arg.value))
            node = node.node
        elif isinstance(node, jinja2.nodes.Name):
            parts.append(node.name)
            return tuple(reversed(parts))
        else:
            return None


def _refs(tree: jinja2.nodes.Template) -> list[tuple[int, tuple[str, ...]]]:
    """(line in the source, path) of each property read: the longest chains only."""
    found: list[tuple[int, tuple[str, ...]]] = []
    inner: set[int] = set()
    for node in tree.find_all((jinja2.nodes.Getattr, jinja2.nodes.Getitem)):
        if id(node) in inner:
            continue
        inner.update(id(n) for n in node.find_all((jinja2.nodes.Getattr, jinja2.nodes.Getitem)))
        path = _path(node)
        if path is None:
            continue
        if len(path) >= 3 and (path[:2] == ("trigger", "properties") or path[0] == "last"):
            found.append((node.lineno, path[:3]))
    return found


def _variables(tree: jinja2.nodes.Template) -> dict[tuple[str, ...], int]:
    """Each variable a template reads (the longest chain: `links.dashboard`, `user.first_name`),
    with the line of the source it is first read on. Names the template sets itself are not."""
    free = meta.find_undeclared_variables(tree)
    found: dict[tuple[str, ...], int] = {}
    inner: set[int] = set()
    chains = (jinja2.nodes.Getattr, jinja2.nodes.Getitem, jinja2.nodes.Name)
    # `a.b.method(...)` reads a.b: the method is not a variable.
    called = {id(call.node) for call in tree.find_all(jinja2.nodes.Call)}
    for node in tree.find_all(chains):
        if id(node) in inner:
            continue
        inner.update(id(n) for n in node.find_all(chains))
        path = _path(node)
        if path is not None and id(node) in called and len(path) > 1:
            path = path[:-1]
        if path is not None and path[0] in free:
            found.setdefault(path, node.lineno)
    return found


DATES_ONE_WAY = "strftime formats dates one way for everyone; use | date or | datetime"
NUMBERS_ONE_WAY = "| format writes numbers one way for everyone; use | number, | percent or | currency"


def _unlocalized(tree: jinja2.nodes.Template) -> list[tuple[int, str]]:
    """(line, problem) for each date or number formatted in a fixed way instead of per locale."""
    problems = [
        (call.lineno, DATES_ONE_WAY)
        for call in tree.find_all(jinja2.nodes.Call)
        if isinstance(call.node, jinja2.nodes.Getattr) and call.node.attr == "strftime"
    ]
    problems += [
        (f.lineno, NUMBERS_ONE_WAY) for f in tree.find_all(jinja2.nodes.Filter) if f.name == "format"
    ]
    return problems


@dataclass
class _Read:
    """One template file as read, for comparing the versions of a template."""

    file: str
    parts: dict[str, int]  # part -> line of its first line
    variables: dict[tuple[str, ...], tuple[str, int]]  # variable -> (part, line)
    broken: bool = False  # a part did not parse: its variables are not known (its error says so)


def load_templates(
    rules_dir: Path,
    problems: list[RuleProblem],
    refs: dict[str, list[TemplateRef]] | None = None,
    versions: dict[str, dict[str, TemplateFile]] | None = None,
    plan: TrackingPlan | None = None,
) -> dict[str, TemplateFile]:
    """Every default template, checked; `refs` (when given) receives what each reads of event
    properties (its versions' reads too), and `versions` each template's versions by locale tag
    (nudge.rulebook.locales). Every version must read the same variables as its default. With
    `plan`, a survey's property is checked to be declared on `survey_answered`."""
    templates: dict[str, TemplateFile] = {}
    localized: dict[str, dict[str, TemplateFile]] = {}
    read: dict[tuple[str, str | None], _Read] = {}
    env = jinja2.Environment(autoescape=True)
    env.filters.update(locales.LINT_FILTERS)
    for path in sorted((rules_dir / TEMPLATES_DIR).glob("*.yaml")):
        name = f"{TEMPLATES_DIR}/{path.name}"
        stem, tag = locales.split_stem(path.stem)
        try:
            doc = load_yaml(rules_dir / name, display_path(rules_dir, name))
            template = validate(doc, TemplateFile)
        except RuleFileError as exc:
            problems.extend(exc.problems)
            continue
        if tag is not None and not locales.is_tag(tag):
            problems.append(
                RuleProblem(
                    doc.file,
                    1,
                    f"'{tag}' is not a locale: name a template's version for a locale "
                    f"{stem}.<locale>.yaml, e.g. {stem}.fr.yaml or {stem}.pt-BR.yaml",
                )
            )
            continue
        seen = _Read(doc.file, {}, {})
        for part in PARTS:
            source = getattr(template, part)
            # The line of the part's first line: a block scalar (|) starts on the next line.
            first = doc.line_of((part,)) + (1 if "\n" in source else 0)
            seen.parts[part] = first
            try:
                tree = _check_template(env, source)
                if refs is not None:
                    refs.setdefault(stem, []).extend(
                        TemplateRef(doc.file, first + line - 1, ref) for line, ref in _refs(tree)
                    )
                for variable, line in _variables(tree).items():
                    seen.variables.setdefault(variable, (part, first + line - 1))
                for line, problem in _unlocalized(tree):
                    problems.append(RuleProblem(doc.file, first + line - 1, f"{part}: {problem}"))
            except jinja2.TemplateSyntaxError as exc:
                line = first + max(0, (exc.lineno or 1) - 1)
                problems.append(RuleProblem(doc.file, line, f"{part}: template error: {exc.message}"))
                seen.broken = True
        if template.in_app is not None:
            try:
                _check_template(env, template.in_app.link)
            except jinja2.TemplateSyntaxError as exc:
                problems.append(
                    doc.problem(("in_app", "link"), f"in_app.link: template error: {exc.message}")
                )
            survey = template.in_app.survey
            if survey is not None and plan is not None:
                issue = _survey_problem(survey, plan)
                if issue:
                    at = "labels" if issue.startswith("in_app.survey.labels") else "property"
                    problems.append(doc.problem(("in_app", "survey", at), issue))
        read[(stem, tag)] = seen
        if tag is None:
            templates[stem] = template
        else:
            localized.setdefault(stem, {})[locales.normal(tag)] = template
    for stem, by_tag in localized.items():
        for tag in by_tag:
            problems.extend(_compare(stem, read.get((stem, None)), read[(stem, tag)]))
    if versions is not None:
        versions.update({stem: by_tag for stem, by_tag in localized.items() if stem in templates})
    return templates


def _compare(stem: str, default: _Read | None, version: _Read) -> list[RuleProblem]:
    """A version of a template reads what its default reads, no more and no less."""
    if default is None:
        return [
            RuleProblem(
                version.file,
                1,
                f"no default {TEMPLATES_DIR}/{stem}.yaml for this locale's version; add it "
                "(a user whose locale has no version of a template gets the default)",
            )
        ]
    problems: list[RuleProblem] = []
    if default.broken or version.broken:
        return problems
    for variable, (part, line) in default.variables.items():
        if variable not in version.variables:
            where = version.parts.get(part, 1)
            problems.append(
                RuleProblem(
                    version.file,
                    where,
                    f"{part}: does not use {'.'.join(variable)}, which {default.file}:{line} uses; "
                    "every locale of a template uses the same variables",
                )
            )
    for variable, (part, line) in version.variables.items():
        if variable not in default.variables:
            problems.append(
                RuleProblem(
                    version.file,
                    line,
                    f"{part}: uses {'.'.join(variable)}, which the default {default.file} does not; "
                    "every locale of a template uses the same variables",
                )
            )
    return problems


def _survey_problem(survey: SurveySpec, plan: TrackingPlan) -> str | None:
    """A survey's answer must land in a property the plan declares on `survey_answered` (a string,
    whose enum, if any, holds every choice): otherwise rules could not read it."""
    unknown = sorted(set(survey.labels) - set(survey.choices))
    if unknown:
        return f"in_app.survey.labels: {unknown} are not among the choices; label a choice, or add it"
    event = plan.events.get(SURVEY_EVENT)
    if event is None:
        return (
            f"in_app.survey: the tracking plan has no event '{SURVEY_EVENT}'; "
            f"declare it with a '{survey.property}' property"
        )
    declared = plan.properties_of.get(SURVEY_EVENT, {})
    spec = declared.get(survey.property)
    if spec is None:
        return (
            f"in_app.survey.property: '{SURVEY_EVENT}' declares no property '{survey.property}'"
            f"{did_you_mean(survey.property, declared)}; declare it in the tracking plan"
        )
    if spec.type != "string":
        return (
            f"in_app.survey.property: '{survey.property}' of '{SURVEY_EVENT}' must be a string "
            f"(it is {spec.type})"
        )
    if spec.enum is not None:
        outside = [c for c in survey.choices if c not in spec.enum]
        if outside or survey.free_text:
            what = f"choices {outside}" if outside else "free_text answers"
            return f"in_app.survey: {what} are outside the enum of '{survey.property}' in the tracking plan"
    return None


def check_refs(refs: list[TemplateRef], rule: str, condition: Node, plan: TrackingPlan) -> list[RuleProblem]:
    """What a trigger's template reads of `trigger` and `last` that the plan does not keep."""
    events = list(dict.fromkeys(s.event for s in subjects_in(condition)))
    readable = {
        prop
        for event in events
        for prop, spec in plan.kept_of.get(event, {}).items()
        if spec.dimension or spec.last
    }
    problems: list[RuleProblem] = []
    for ref in refs:
        _, first, prop = ref.path
        if ref.path[0] == "trigger":
            if prop in readable:
                continue
            if not readable:
                named = ", ".join(events) or "no event"
                message = (
                    f"trigger.properties.{prop}: trigger '{rule}' fires on {named}, of which the tracking "
                    "plan keeps no property (dimension or last); name such an event in its condition"
                )
            else:
                hint = did_you_mean(prop, readable) or f" (it keeps {', '.join(sorted(readable))})"
                message = (
                    f"trigger.properties.{prop}: trigger '{rule}'s events keep no property '{prop}'{hint}"
                )
            problems.append(RuleProblem(ref.file, ref.line, message))
            continue
        if first not in plan.events:
            message = f"last.{first}: unknown event '{first}'{did_you_mean(first, plan.events)}"
        elif prop in {p for p, spec in plan.kept_of.get(first, {}).items() if spec.last}:
            continue
        else:
            message = (
                f"last.{first}.{prop}: the tracking plan keeps no last value of '{prop}' on '{first}'; "
                "declare it with `last: true`"
            )
        problems.append(RuleProblem(ref.file, ref.line, message))
    return problems
