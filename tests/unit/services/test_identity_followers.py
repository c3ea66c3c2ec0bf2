"""What follows a merge: no message to an anonymous-only profile or a merged-away id, the ledger
and cooldowns adopted by the surviving user, erasure of every merged id with the person."""

from __future__ import annotations

from datetime import timedelta

from nudge.adapters.memory import (
    MemoryDecisionPublisher,
    MemoryLedger,
    MemorySegmentStore,
    MemoryUsageStore,
)
from nudge.model.state import Stamped, UserState
from nudge.model.versioned import Versioned
from nudge.services.dispatch import dispatch
from nudge.services.erasure import erase_user
from nudge.services.evaluate import RulesPorts, evaluate_user
from tests.unit.services.test_dispatch import NOON, RULES, batch, decision, routed, world
from tests.unit.services.test_identity import anon, identify, send


def test_an_anonymous_only_profile_is_never_evaluated_nor_sent_to() -> None:
    # Given a visitor known only by their device, far enough into onboarding for rules to fire
    usage = MemoryUsageStore()
    send(usage, anon("signed_up", "dev-1", "s1", hours_ago=30))
    ports = RulesPorts(usage=usage, segments=MemorySegmentStore(), publisher=MemoryDecisionPublisher())
    state = usage.users["anon:dev-1"].value
    # When the evaluator sees them
    outcome = evaluate_user(state, RULES, ports, NOON)
    # Then nothing is decided or recorded for them
    assert not outcome.evaluated
    assert outcome.published == ()
    assert ports.segments.load(["anon:dev-1"])["anon:dev-1"].version == 0


def test_dispatch_refuses_an_anonymous_profile_and_a_merged_away_id() -> None:
    ports = world(("u1",))
    assert isinstance(ports.usage, MemoryUsageStore)
    ports.usage.users["old-id"] = Versioned(UserState(user_id="old-id", merged_into="u1"), 2)
    for user in ("anon:dev-1", "old-id"):
        result = dispatch(batch(decision("finish_setup", user=user), user=user), RULES, ports, NOON)
        assert result.verdicts == []
    assert routed(ports) == []


def test_a_rule_sent_to_the_aliased_id_is_not_sent_again_to_the_user_within_its_cooldown() -> None:
    # Given finish_setup was sent to old-id, which was then aliased into u1
    ports = world(("old-id", "u1"))
    assert isinstance(ports.usage, MemoryUsageStore)
    assert isinstance(ports.ledger, MemoryLedger)
    first = dispatch(batch(decision("finish_setup", user="old-id"), user="old-id"), RULES, ports, NOON)
    assert [v.outcome for v in first.verdicts] == ["send"]
    ports.ledger.unsubscribe("old-id", "push", NOON)
    u1 = ports.usage.users["u1"]
    ports.usage.users["u1"] = Versioned(u1.value.model_copy(update={"merged": ["old-id", "anon:x"]}), 2)
    # When the user's own evaluation decides the same rule a day later
    later = NOON + timedelta(days=1)
    result = dispatch(batch(decision("finish_setup", user="u1", at=later), user="u1"), RULES, ports, later)
    # Then the cooldown the aliased id started holds, and its unsubscribe too
    assert [(v.outcome, v.reason) for v in result.verdicts] == [("suppressed", "cooldown")]
    record = ports.ledger.load("u1", None, []).record.value
    assert record.adopted == ["old-id"]
    assert "push" in record.unsubscribed
    assert len(record.sends) == 1


def test_adopting_the_same_id_twice_changes_nothing() -> None:
    ports = world(("old-id",))
    dispatch(batch(decision("finish_setup", user="old-id"), user="old-id"), RULES, ports, NOON)
    assert isinstance(ports.ledger, MemoryLedger)
    ledger = ports.ledger
    ledger.adopt("u1", ["old-id"], NOON)
    once = ledger.load("u1", None, []).record.value
    ledger.adopt("u1", ["old-id"], NOON)
    assert ledger.load("u1", None, []).record.value == once


def test_erasing_a_person_erases_every_id_merged_into_them() -> None:
    usage = MemoryUsageStore()
    send(usage, anon("setup_completed", "dev-1", "s1"), identify("u-ada", "dev-1"))
    usage.users["u-ada"] = Versioned(
        usage.users["u-ada"].value.model_copy(
            update={"traits": {"email": Stamped(v="ada@example.com", at=NOON, mid="m")}}
        ),
        usage.users["u-ada"].version,
    )

    class NoAccounts:
        def escalation(self, account_id: str) -> None:
            return None

        def decisions_of(self, account_id: str, user_id: str) -> list[str]:
            return []

        def delete_decisions(self, account_id: str, decision_ids: object) -> int:
            return 0

        def anonymize_decision(self, account_id: str, decision_id: str, user_id: str) -> bool:
            return False

        def anonymize_escalation(self, account_id: str, user_id: str) -> bool:
            return False

    erasure = erase_user(
        "u-ada", usage=usage, segments=MemorySegmentStore(), ledger=MemoryLedger(), accounts=NoAccounts()
    )
    assert erasure.usage == 2
    assert usage.users == {}
