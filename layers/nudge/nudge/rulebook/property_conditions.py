"""The condition leaves and filters over event properties, checked against the tracking plan:
`where:` on count and days_since, `sum:` and `last:` (nudge.rulebook.conditions calls these).

Every mistake is a file:line problem in the marketer's words: a property the event does not
declare (did you mean), one not kept for what the rule asks (say what to add to the plan), a
value outside the enum (did you mean) or of the wrong type.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any, Protocol

from nudge.conditions.facts import Where
from nudge.conditions.property_facts import last_fact, last_number_fact, sum_fact
from nudge.conditions.tree import Catalog, Fact, Node
from nudge.model.properties import PropertySpec, accepts, canonical
from nudge.rulebook.condition_specs import Bounds, LastSpec, Spec, SumSpec, ValueSpec
from nudge.rulebook.condition_specs import Where as WhereSpec
from nudge.rulebook.yamlfile import Loc, did_you_mean

PLAN = "tracking-plan.yaml"
_USE = {"dimension": "filter on it with where:", "sum": "sum it", "last": "read its last value"}


class LeafParser(Protocol):
    """What of nudge.rulebook.conditions.Parser these leaves use."""

    catalog: Catalog

    def fail(self, loc: Loc, message: str) -> None: ...

    def name(
        self,
        kind: str,
        value: Any,
        known: frozenset[str] | tuple[str, ...],
        loc: Loc,
        extra: Sequence[str] = (),
    ) -> bool: ...

    def spec(self, model: type[Spec], body: Any, loc: Loc) -> Any: ...

    def bounds(self, fact: Fact, spec: Bounds | ValueSpec) -> Node: ...

    def window_days(self, within: timedelta, loc: Loc) -> int | None: ...

    def compare(self, fact: Fact, spec: ValueSpec, number: Fact | None = None) -> Node: ...


def declared(p: LeafParser, event: str, prop: Any, use: str, loc: Loc) -> PropertySpec | None:
    """The plan's spec of `prop` on `event` when it is kept for `use` (dimension, sum or last)."""
    props = p.catalog.properties.get(event, {})
    if not isinstance(prop, str):
        p.fail(loc, "a property name is text")
        return None
    spec = props.get(prop)
    if spec is None:
        hint = did_you_mean(prop, props) or f"; declare it under events: {event}: properties: in {PLAN}"
        p.fail(loc, f"event '{event}' has no property '{prop}'{hint}")
        return None
    if not getattr(spec, use):
        p.fail(
            loc,
            f"property '{prop}' of '{event}' is not kept as a {use}; add `{use}: true` to it in "
            f"{PLAN} to {_USE[use]}",
        )
        return None
    return spec


def value_problem(prop: str, spec: PropertySpec, value: Any) -> str | None:
    """Why a value a rule compares `prop` with can never match what the plan lets in."""
    if not accepts(spec.type, value):
        quote = f"; quote it: '{value}'" if spec.type == "string" and isinstance(value, int | float) else ""
        return f"{prop} is a {spec.type}, so {value!r} never matches{quote}"
    if spec.enum is not None and canonical(value) not in {canonical(v) for v in spec.enum}:
        allowed = [canonical(v) for v in spec.enum]
        hint = did_you_mean(canonical(value), allowed) or f" (allowed: {', '.join(allowed)})"
        return f"unknown {prop} '{canonical(value)}'{hint}"
    return None


def parse_where(p: LeafParser, event: str, where: WhereSpec | None, loc: Loc) -> tuple[bool, Where]:
    """(ok, the filter): one dimension of `event`, equal to a value or any of a list."""
    if where is None:
        return True, None
    here = (*loc, "where")
    if len(where) != 1:
        p.fail(here, "where: takes one property, e.g. {feature: sso}; combine conditions with all: or any:")
        return False, None
    ((prop, given),) = where.items()
    spec = declared(p, event, prop, "dimension", (*here, prop))
    if spec is None:
        return False, None
    values = given if isinstance(given, list) else [given]
    if not values:
        p.fail((*here, prop), f"where: give at least one value of {prop}")
        return False, None
    ok = True
    for i, value in enumerate(values):
        problem = value_problem(prop, spec, value)
        if problem is not None:
            p.fail((*here, prop, i) if isinstance(given, list) else (*here, prop), f"where: {problem}")
            ok = False
    return ok, (prop, frozenset(canonical(v) for v in values)) if ok else None


def _refuse_where(p: LeafParser, leaf: str, where: WhereSpec | None, loc: Loc, why: str) -> bool:
    if where is None:
        return False
    p.fail((*loc, "where"), f"{leaf}: where: is not supported: {why}")
    return True


def parse_sum(p: LeafParser, body: Any, loc: Loc) -> Node | None:
    spec: SumSpec | None = p.spec(SumSpec, body, loc)
    if spec is None or not p.name("event", spec.event, p.catalog.events, (*loc, "event")):
        return None
    if _refuse_where(p, "sum", spec.where, loc, "sums are kept per event, not per value of a dimension"):
        return None
    if declared(p, spec.event, spec.property, "sum", (*loc, "property")) is None:
        return None
    days = None
    if spec.within is not None:
        days = p.window_days(spec.within, (*loc, "within"))
        if days is None:
            return None
    return p.bounds(sum_fact(spec.event, spec.property, days), spec)


def parse_last(p: LeafParser, body: Any, loc: Loc) -> Node | None:
    spec: LastSpec | None = p.spec(LastSpec, body, loc)
    if spec is None or not p.name("event", spec.event, p.catalog.events, (*loc, "event")):
        return None
    if _refuse_where(p, "last", spec.where, loc, "only the one latest value is kept"):
        return None
    prop = spec.property
    kept = declared(p, spec.event, prop, "last", (*loc, "property"))
    if kept is None:
        return None
    ok = True
    for key, shown in (("equals", "equals"), ("not_equals", "not_equals"), ("in_", "in")):
        given = getattr(spec, key)
        for i, value in enumerate(given if isinstance(given, list) else [given] if given is not None else []):
            problem = value_problem(prop, kept, value)
            if problem is not None:
                p.fail((*loc, shown, i) if isinstance(given, list) else (*loc, shown), f"last: {problem}")
                ok = False
    numeric = kept.type in ("number", "integer")
    if (spec.at_least is not None or spec.at_most is not None) and not numeric:
        p.fail(loc, f"last: {prop} is a {kept.type}; at_least and at_most compare numbers")
        ok = False
    if not ok:
        return None
    # Last values compare as text (true/false, 3 for an integral number), as last_fact gives them.
    as_text = spec.model_copy(
        update={
            "equals": canonical(spec.equals) if spec.equals is not None else None,
            "not_equals": canonical(spec.not_equals) if spec.not_equals is not None else None,
            "in_": [canonical(v) for v in spec.in_] if spec.in_ is not None else None,
        }
    )
    number = last_number_fact(spec.event, prop) if numeric else None
    return p.compare(last_fact(spec.event, prop), as_text, number)
