"""Triggers run as one-step journeys on the journey engine (nudge.rulebook.trigger_journeys,
nudge.domain.trigger_decisions): compiled at load, entered from the entries pass, deciding with the
ids triggers always had (so a deploy of the engine re-sends nothing already sent), keeping no
instance. Over a sample population at several instants, on the one-shot rules (every trigger kind:
email, channel lists, in_app, escalate, escalate_when, once)."""

from __future__ import annotations

import hashlib
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from nudge.adapters.memory import MemoryUsageStore
from nudge.conditions.features import AccountFacts
from nudge.conditions.tree import holds_in
from nudge.domain.evaluate import evaluate
from nudge.model.messages import Batch, InvalidMessage, Message
from nudge.model.state import UserState
from nudge.rulebook.journey_specs import END as STEP_END
from nudge.rulebook.ruleset import Trigger
from nudge.rulebook.yamlfile import RuleFileError
from nudge.services.ingest import IngestLimits, ingest
from nudge.tools.samples.generator import generate
from tests.shipped import RULES
from tests.unit.services.test_journeys_flow import rules_with

START = datetime(2025, 1, 6, tzinfo=UTC)
END = START + timedelta(days=70)
INSTANTS = [END, END + timedelta(days=3, hours=7), END + timedelta(days=31)]
Population = list[tuple[UserState, AccountFacts | None]]


@pytest.fixture(scope="module")
def population() -> Population:
    raw = list(generate(users=80, accounts=10, days=70, seed=5, start=START))
    batch = Batch.model_validate({"batch": raw})
    messages: list[Message] = [m for m in batch.batch if not isinstance(m, InvalidMessage)]
    store = MemoryUsageStore()
    ingest(list(enumerate(messages)), RULES.plan, store, END, IngestLimits(), sleep=lambda _s: None)
    accounts = {
        account_id: AccountFacts(dict(stored.value.trait_values()), store.load_rollup(account_id))
        for account_id, stored in store.accounts.items()
    }
    users = [store.users[uid].value for uid in sorted(store.users)]
    return [(u, accounts.get(u.account_id) if u.account_id else None) for u in users]


def test_each_trigger_compiles_at_load_into_a_one_step_journey_named_as_the_trigger() -> None:
    compiled = RULES.programs[: len(RULES.triggers)]
    assert [p.id for p in compiled] == [t.id for t in RULES.triggers]
    assert RULES.programs[len(RULES.triggers) :] == RULES.journeys
    for journey, trigger in zip(compiled, RULES.triggers, strict=True):
        assert journey.trigger is trigger
        assert journey.entry is trigger.condition
        assert journey.spec.kind == trigger.spec.kind
        assert journey.spec.priority == trigger.spec.priority
        assert journey.spec.blocked.do == "skip"
        kinds = [s.kind for s in journey.steps.values()]
        if trigger.spec.action == "escalate":
            assert kinds == ["escalate"]
        elif trigger.escalate_when is not None:
            assert kinds == ["send", "branch", "escalate"]
            assert journey.steps[journey.first].next == "escalate_when"
        else:
            assert kinds == ["send"]
            assert journey.steps[journey.first].next == STEP_END
    assert any(t.escalate_when is not None for t in RULES.triggers)
    assert any(t.spec.action == "escalate" for t in RULES.triggers)
    assert any(t.spec.once for t in RULES.triggers)


def _id_before_the_engine(trigger: Trigger, action: str, subject: str, now: datetime) -> str:
    """The decision id triggers had before they ran on the engine, written out here on purpose."""
    spec = trigger.spec
    window = "once" if spec.once else str(math.floor(now.timestamp() / spec.cooldown.total_seconds()))
    return hashlib.sha256(f"{trigger.id}:{action}|{subject}|{window}".encode()).hexdigest()[:32]


@pytest.mark.parametrize("now", INSTANTS)
def test_a_trigger_decides_on_the_engine_what_and_under_which_id_it_always_did(
    population: Population, now: datetime
) -> None:
    decided = 0
    for user, account in population:
        evaluation = evaluate(RULES, user, account, None, now)
        facts = evaluation.facts
        expected: set[tuple[str, str, str, str, str]] = set()
        for trigger in RULES.triggers:
            if not holds_in(trigger.condition, facts):
                continue
            spec = trigger.spec
            actions = [str(spec.action)]
            if spec.action != "escalate" and trigger.escalate_when and holds_in(trigger.escalate_when, facts):
                actions.append("escalate")
            for action in actions:
                escalation = action == "escalate"
                subject = (
                    f"account:{user.account_id}" if escalation and user.account_id else f"user:{user.user_id}"
                )
                template = "cs_escalation" if escalation and spec.action != "escalate" else spec.template
                expected.add(
                    (
                        trigger.id,
                        action,
                        _id_before_the_engine(trigger, action, subject, now),
                        template,
                        spec.kind if not escalation else "escalation",
                    )
                )
        made = [d for d in evaluation.decisions if not d.journey]
        assert {(d.rule, d.action, d.decision_id, d.template, d.kind) for d in made} == expected
        assert all(d.step == "" and d.instance == "" and d.seq is None for d in made)
        # Highest priority first, as dispatch judges them
        assert [d.priority for d in evaluation.decisions] == sorted(
            (d.priority for d in evaluation.decisions), reverse=True
        )
        # A compiled trigger keeps no instance: its window is its memory
        assert not set(evaluation.journeys.instances) & set(RULES.trigger_by_id)
        decided += len(made)
    assert decided > 0


WHEN_ENTRY = """
id: when_entry
kind: rescue
entry: {when: {segment: [declining, dormant]}}
steps:
  - id: nudge
    send: {channel: email, template: come_back}
  - id: pause
    wait: 7d
"""


def test_the_entries_pass_enters_a_journey_exactly_when_its_condition_holds(
    population: Population, tmp_path: Path
) -> None:
    rules = rules_with(tmp_path, "when_entry", WHEN_ENTRY)
    journey = rules.journey_by_id["when_entry"]
    assert journey.entry is not None
    entered = 0
    for user, account in population:
        evaluation = evaluate(rules, user, account, None, END)
        holds = holds_in(journey.entry, evaluation.facts)
        assert ("when_entry" in evaluation.journeys.instances) == holds, user.user_id
        entered += holds
    assert 0 < entered < len(population)


def test_a_journey_named_as_a_trigger_is_refused_naming_both(tmp_path: Path) -> None:
    # One engine runs both: the ledger, the caps and the report would not tell them apart
    with pytest.raises(RuleFileError) as refused:
        rules_with(tmp_path, "rescue_dormant", WHEN_ENTRY.replace("id: when_entry", "id: rescue_dormant"))
    [problem] = refused.value.problems
    assert problem.file.endswith("journeys/rescue_dormant.yaml")
    assert "journey id 'rescue_dormant' is also a trigger's id (triggers.yaml); rename one" in problem.message
