"""durable_rules, through the adapter, agrees with the plain reading of every shipped condition."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from nudge.conditions.tree import AnyOf, Check, Fact, NamedCondition, Not, checks_in, holds_in
from nudge.domain.engine import CompiledGroup, to_durable
from nudge.model.decisions import Value
from nudge.rulebook.loader import load_rules
from nudge.rulebook.ruleset import RuleSet, all_conditions

RULES: RuleSet = load_rules(Path("rules"))
NAMED = [(s.id, s.condition) for s in RULES.segments if s.condition is not None] + [
    (t.id, t.condition) for t in RULES.triggers
]
SHIPPED = CompiledGroup("property", [NamedCondition(name, node) for name, node in NAMED])


def _candidates(tests: list[Check]) -> dict[str, list[Value]]:
    """For each fact, values on both sides of every threshold it is compared with."""
    values: dict[str, list[Value]] = {}
    for test in tests:
        bucket = values.setdefault(test.fact.key, [])
        if isinstance(test.value, str):
            bucket += [test.value, "", "other"]
        else:
            bucket += [test.value, test.value - 1, test.value + 1, 0]
    return values


CANDIDATES = _candidates([t for node in all_conditions(RULES) for t in checks_in(node)])


@st.composite
def facts(draw: st.DrawFn) -> dict[str, Value]:
    return {key: draw(st.sampled_from(options)) for key, options in CANDIDATES.items()}


@settings(max_examples=300, deadline=None)
@given(facts())
def test_durable_rules_fires_exactly_the_rules_whose_condition_holds(sample: dict[str, Value]) -> None:
    expected = [name for name, node in NAMED if holds_in(node, sample)]
    assert SHIPPED.matches(sample) == expected


def test_not_is_pushed_down_to_the_tests() -> None:
    fact = Fact("x", "x", lambda ctx: 0)
    node = Not(AnyOf((Check(fact, "gte", 3), Check(fact, "eq", 1))))
    assert to_durable(node) == {"$and": [{"$lt": {"x": 3}}, {"$neq": {"x": 1}}]}


def test_a_ruleset_survives_many_evaluations_with_and_without_matches() -> None:
    fact = Fact("n", "n", lambda ctx: 0)
    rules = CompiledGroup("churn", [NamedCondition("big", Check(fact, "gte", 5))])
    fired = [rules.matches({"n": i % 10}) for i in range(3000)]  # beyond durable_rules' 1,024 sessions
    assert fired.count(["big"]) == 1500
