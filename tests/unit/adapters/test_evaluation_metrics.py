"""The evaluation metrics adapter: what each outcome adds to the invocation's counts."""

from __future__ import annotations

from typing import Any

from nudge.adapters.metrics import PowertoolsEvaluationMetrics
from nudge.model.outcomes import UserOutcome


class RecordingMetrics:
    """The part of Powertools' Metrics the adapter calls, recording instead of emitting."""

    namespace = "Nudge"
    default_dimensions: dict[str, str] = {}

    def __init__(self) -> None:
        self.added: dict[str, float] = {}

    def add_metric(self, name: str, unit: Any, value: float) -> None:
        self.added[name] = self.added.get(name, 0) + value


def outcome(user: str, ignored: tuple[str, ...] = ()) -> UserOutcome:
    return UserOutcome(user, True, False, "dormant", None, None, (), None, 0, ignored)


def test_facts_answered_as_missing_are_counted_per_invocation() -> None:
    recorded = RecordingMetrics()
    adapter = PowertoolsEvaluationMetrics(recorded)  # type: ignore[arg-type]

    adapter.outcome(outcome("u1", ("account_trait_number__mrr", "account_trait_number__seats")))
    adapter.outcome(outcome("u2", ("account_trait_number__mrr",)))
    adapter.outcome(outcome("u3"))
    adapter.flush()

    assert recorded.added["FactsIgnored"] == 3
    assert recorded.added["Evaluations"] == 3
