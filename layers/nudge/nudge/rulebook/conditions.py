"""The parser of conditions as marketers write them in YAML (the specs in rulebook.condition_specs):
it turns them into a condition tree, with a file:line problem for each mistake."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from pydantic import ValidationError

from nudge.conditions import features as F
from nudge.conditions.facts import (
    ACCOUNT_BAND_FACT,
    BAND_FACT,
    MISSING_NUMBER,
    SCORE_FACT,
    SEGMENT_FACT,
    account_metric_fact,
    account_trait_fact,
    active_days_fact,
    age_fact,
    count_fact,
    days_since_fact,
    days_without_fact,
    did_not_fact,
    feature_fact,
    frequency_fact,
    milestone_days_fact,
    trait_fact,
    trait_number_fact,
    trend_fact,
    weeks_below_fact,
)
from nudge.conditions.property_facts import count_where_fact
from nudge.conditions.tree import All, AnyOf, Catalog, Check, Fact, Node, Not
from nudge.model.decisions import Value
from nudge.rulebook.condition_specs import (
    COMBINATORS,
    LEAVES,
    AccountSpec,
    ActiveDaysSpec,
    Bounds,
    CountSpec,
    DaysSinceSpec,
    DidSpec,
    FeatureSpec,
    ScoreSpec,
    Spec,
    TraitSpec,
    TrendSpec,
    ValueSpec,
    WeeksBelowSpec,
)
from nudge.rulebook.property_conditions import parse_last, parse_sum, parse_where
from nudge.rulebook.yamlfile import Loc, RuleProblem, YamlDoc, did_you_mean, plain_error


class Parser:
    """Turn YAML condition data into a Node, collecting problems with file:line."""

    def __init__(self, doc: YamlDoc, catalog: Catalog, problems: list[RuleProblem]) -> None:
        self.doc = doc
        self.catalog = catalog
        self.problems = problems

    def fail(self, loc: Loc, message: str) -> None:
        self.problems.append(self.doc.problem(loc, message))

    def parse(self, data: Any, loc: Loc) -> Node | None:
        if not isinstance(data, dict) or len(data) != 1:
            self.fail(
                loc,
                "a condition is one key such as all:, any:, not:, segment:, days_since: ...; "
                "put several under all: or any:",
            )
            return None
        ((kind, body),) = data.items()
        here = (*loc, kind)
        if kind in ("all", "any"):
            if not isinstance(body, list) or not body:
                self.fail(here, f"{kind}: takes a list of conditions")
                return None
            items = [self.parse(item, (*here, i)) for i, item in enumerate(body)]
            if any(item is None for item in items):
                return None
            nodes = tuple(i for i in items if i is not None)
            return All(nodes) if kind == "all" else AnyOf(nodes)
        if kind == "not":
            inner = self.parse(body, here)
            return Not(inner) if inner is not None else None
        method = getattr(self, f"_{kind}", None)
        if kind not in LEAVES or method is None:
            self.fail(here, f"unknown condition '{kind}'{did_you_mean(str(kind), (*LEAVES, *COMBINATORS))}")
            return None
        node: Node | None = method(body, here)
        return node

    def spec(self, model: type[Spec], body: Any, loc: Loc) -> Any:
        if not isinstance(body, dict):
            self.fail(loc, f"{loc[-1]}: expects a mapping, e.g. {_EXAMPLES.get(str(loc[-1]), '{...}')}")
            return None
        try:
            return model(**body)
        except ValidationError as exc:
            said: set[str | int] = set()
            for err in exc.errors():
                # Only the key matters: deeper parts are pydantic's union members (literal[...]),
                # and a value that fits no member of a union would otherwise be reported per member.
                path = tuple(p for p in err["loc"] if isinstance(p, str | int))[:1]
                path = tuple(_SPELLED.get(p, p) if isinstance(p, str) else p for p in path)
                if path and path[0] in said:
                    continue
                said.update(path)
                message = plain_error(err)
                if err["type"] == "extra_forbidden":
                    keys = [_SPELLED.get(k, k) for k in model.model_fields]
                    hint = did_you_mean(str(path[-1]), keys)
                    message = f"unknown key '{path[-1]}'{hint or '; remove it or check its spelling'}"
                elif err["type"] == "missing":
                    message = f"'{path[-1]}' is required"
                elif path:
                    message = f"{path[-1]}: {message}"
                self.fail((*loc, *path), f"{loc[-1]}: {message}")
            return None
        except TypeError as exc:  # unexpected keyword in the aliasing constructors
            self.fail(loc, f"{loc[-1]}: {exc}")
            return None

    def name(
        self,
        kind: str,
        value: Any,
        known: frozenset[str] | tuple[str, ...],
        loc: Loc,
        extra: Sequence[str] = (),
    ) -> bool:
        if not isinstance(value, str):
            self.fail(loc, f"{kind} name must be text")
            return False
        if value in known or value in extra:
            return True
        hint = did_you_mean(value, (*known, *extra))
        self.fail(loc, f"unknown {kind} '{value}'{hint}")
        return False

    def bounds(self, fact: Fact, spec: Bounds | ValueSpec) -> Node:
        tests: list[Node] = []
        if spec.at_least is not None:
            tests.append(Check(fact, "gte", spec.at_least))
        if spec.at_most is not None:
            tests.append(Check(fact, "lte", spec.at_most))
        return tests[0] if len(tests) == 1 else All(tuple(tests))

    def one_of(self, fact: Fact, values: Sequence[Value]) -> Node:
        tests = tuple(Check(fact, "eq", v) for v in values)
        return tests[0] if len(tests) == 1 else AnyOf(tests)

    def _segment(self, body: Any, loc: Loc) -> Node | None:
        if not self.catalog.allow_segment:
            self.fail(loc, "segments cannot depend on segments; use the conditions themselves")
            return None
        names = body if isinstance(body, list) else [body]
        ok = all(
            self.name("segment", n, self.catalog.segments, (*loc, i) if isinstance(body, list) else loc)
            for i, n in enumerate(names)
        )
        return self.one_of(SEGMENT_FACT, names) if ok else None

    def _milestone(self, body: Any, loc: Loc) -> Node | None:
        if not self.name("milestone", body, self.catalog.milestones, loc):
            return None
        return Check(milestone_days_fact(body), "lt", F.NEVER)

    def _days_since(self, body: Any, loc: Loc) -> Node | None:
        spec = self.spec(DaysSinceSpec, body, loc)
        if spec is None:
            return None
        if spec.milestone is not None:
            if not self.name("milestone", spec.milestone, self.catalog.milestones, (*loc, "milestone")):
                return None
            return self.bounds(milestone_days_fact(spec.milestone), spec)
        if not self.name("event", spec.event, self.catalog.events, (*loc, "event"), extra=("any",)):
            return None
        if spec.event == "any" and spec.where is not None:
            self.fail((*loc, "where"), "days_since: where: needs a named event, not any")
            return None
        ok, where = parse_where(self, spec.event, spec.where, loc)
        if not ok:
            return None
        nodes: list[Node] = []
        if spec.at_least is not None:  # "has not done X in N days": never matches users younger than N
            nodes.append(Check(days_without_fact(spec.event, where), "gte", spec.at_least))
        if spec.at_most is not None:  # "did X in the last N days": never done does not match
            nodes.append(Check(days_since_fact(spec.event, where), "lte", spec.at_most))
        return nodes[0] if len(nodes) == 1 else All(tuple(nodes))

    def window_days(self, within: timedelta, loc: Loc) -> int | None:
        days = within.total_seconds() / 86400
        if days != int(days) or not 1 <= days <= 84:
            self.fail(loc, "within must be whole days between 1d and 12w (the history kept), e.g. 7d")
            return None
        return int(days)

    def _count(self, body: Any, loc: Loc) -> Node | None:
        spec = self.spec(CountSpec, body, loc)
        if spec is None or not self.name("event", spec.event, self.catalog.events, (*loc, "event")):
            return None
        ok, where = parse_where(self, spec.event, spec.where, loc)
        days = self.window_days(spec.within, (*loc, "within"))
        if not ok or not days:
            return None
        fact = count_fact(spec.event, days) if where is None else count_where_fact(spec.event, where, days)
        return self.bounds(fact, spec)

    def _sum(self, body: Any, loc: Loc) -> Node | None:
        return parse_sum(self, body, loc)

    def _last(self, body: Any, loc: Loc) -> Node | None:
        return parse_last(self, body, loc)

    def _active_days(self, body: Any, loc: Loc) -> Node | None:
        spec = self.spec(ActiveDaysSpec, body, loc)
        if spec is None:
            return None
        days = self.window_days(spec.within, (*loc, "within"))
        return self.bounds(active_days_fact(days), spec) if days else None

    def _feature(self, body: Any, loc: Loc) -> Node | None:
        spec = self.spec(FeatureSpec, body, loc)
        if spec is None or not self.name("feature", spec.name, self.catalog.features, (*loc, "name")):
            return None
        statuses = spec.is_ if isinstance(spec.is_, list) else [spec.is_]
        return self.one_of(feature_fact(spec.name), statuses)

    def compare(self, fact: Fact, spec: ValueSpec, number: Fact | None = None) -> Node:
        nodes: list[Node] = []
        if spec.exists is not None:
            nodes.append(Check(fact, "neq" if spec.exists else "eq", ""))
        if spec.equals is not None:
            nodes.append(Check(fact, "eq", _scalar(spec.equals)))
        if spec.not_equals is not None:
            nodes.append(Check(fact, "neq", _scalar(spec.not_equals)))
        if spec.in_ is not None:
            nodes.append(self.one_of(fact, [_scalar(v) for v in spec.in_]))
        if spec.at_least is not None or spec.at_most is not None:
            numeric = number or fact
            if number is not None:  # a missing trait is below every at_least and must fail at_most too
                nodes.append(Check(numeric, "gt", MISSING_NUMBER))
            nodes.append(self.bounds(numeric, spec))
        return nodes[0] if len(nodes) == 1 else All(tuple(nodes))

    def _trait(self, body: Any, loc: Loc) -> Node | None:
        spec = self.spec(TraitSpec, body, loc)
        if spec is None or not self.name("trait", spec.name, self.catalog.user_traits, (*loc, "name")):
            return None
        return self.compare(trait_fact(spec.name), spec, trait_number_fact(spec.name))

    def _account(self, body: Any, loc: Loc) -> Node | None:
        spec = self.spec(AccountSpec, body, loc)
        if spec is None:
            return None
        if (spec.band is not None or spec.metric == "score") and not self.catalog.allow_score:
            self.fail(loc, "scoring signals cannot depend on a score; use the account's traits or metrics")
            return None
        if spec.band is not None:
            bands = self.bands(spec.band, (*loc, "band"))
            return self.one_of(ACCOUNT_BAND_FACT, bands) if bands else None
        if spec.metric is not None:
            return self.compare(account_metric_fact(spec.metric), spec)
        if not self.name("account trait", spec.trait, self.catalog.account_traits, (*loc, "trait")):
            return None
        trait = str(spec.trait)
        return self.compare(account_trait_fact(trait), spec, trait_number_fact(trait, account=True))

    def _score(self, body: Any, loc: Loc) -> Node | None:
        if not self.catalog.allow_score:
            self.fail(loc, "scoring signals cannot depend on the score itself")
            return None
        spec = self.spec(ScoreSpec, body, loc)
        if spec is None:
            return None
        nodes: list[Node] = []
        if spec.band is not None:
            bands = self.bands(spec.band, (*loc, "band"))
            if not bands:
                return None
            nodes.append(self.one_of(BAND_FACT, bands))
        if spec.at_least is not None:
            nodes.append(Check(SCORE_FACT, "gte", spec.at_least))
        if spec.at_most is not None:
            nodes.append(Check(SCORE_FACT, "lte", spec.at_most))
        return nodes[0] if len(nodes) == 1 else All(tuple(nodes))

    def bands(self, value: str | list[str], loc: Loc) -> list[Value] | None:
        """Band names are fixed words: a typo would otherwise never match, silently."""
        names = value if isinstance(value, list) else [value]
        ok = all(self.name("band", n, ("high", "mid", "low"), loc) for n in names)
        return list(names) if ok and names else None

    def _weeks_below(self, body: Any, loc: Loc) -> Node | None:
        spec = self.spec(WeeksBelowSpec, body, loc)
        return Check(weeks_below_fact(spec.metric, spec.threshold), "gte", spec.weeks) if spec else None

    def _trend(self, body: Any, loc: Loc) -> Node | None:
        spec = self.spec(TrendSpec, body, loc)
        if spec is None:
            return None
        if spec.direction == "down":
            return Check(trend_fact(spec.metric), "lte", -spec.by_at_least)
        return Check(trend_fact(spec.metric), "gte", spec.by_at_least)

    def _did(self, body: Any, loc: Loc) -> Node | None:
        spec = self.spec(DidSpec, body, loc)
        if spec is None:
            return None
        ok = self.name("event", spec.event, self.catalog.events, (*loc, "event"))
        ok = self.name("event", spec.but_not, self.catalog.events, (*loc, "but_not")) and ok
        if ok and spec.event == spec.but_not:
            self.fail(loc, "did: event and but_not are the same event; name two different events")
            return None
        return Check(did_not_fact(spec.event, spec.but_not, spec.within), "eq", 1) if ok else None

    def _age(self, body: Any, loc: Loc) -> Node | None:
        spec = self.spec(Bounds, body, loc)
        return self.bounds(age_fact(), spec) if spec else None

    def _frequency(self, body: Any, loc: Loc) -> Node | None:
        values = body if isinstance(body, list) else [body]
        for i, v in enumerate(values):
            if v not in ("light", "medium", "heavy"):
                self.fail(
                    (*loc, i) if isinstance(body, list) else loc,
                    f"frequency is light, medium or heavy, not {v!r}",
                )
                return None
        return self.one_of(frequency_fact(), values)


# The spec models spell `is` and `in` (Python keywords) with an underscore.
_SPELLED = {"is_": "is", "in_": "in"}


def _scalar(value: str | float | bool) -> Value:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


_EXAMPLES = {
    "days_since": "{event: project_created, at_least: 14}",
    "count": "{event: report_exported, within: 7d, at_least: 3}",
    "sum": "{event: invoice_paid, property: revenue, within: 28d, at_least: 100}",
    "last": "{event: premium_feature_attempted, property: feature, equals: sso}",
    "feature": "{name: reporting, is: habitual}",
    "trait": "{name: plan, equals: free}",
    "account": "{trait: mrr, at_least: 2000}",
    "score": "{band: high}",
    "weeks_below": "{metric: sessions, threshold: 2, weeks: 2}",
    "trend": "{metric: sessions, direction: down, by_at_least: 50}",
    "did": "{event: signed_up, but_not: setup_completed, within: 3d}",
    "age": "{at_least: 7}",
    "active_days": "{within: 7d, at_least: 3}",
}
