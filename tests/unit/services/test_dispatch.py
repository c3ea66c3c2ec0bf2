"""Dispatch with in-memory fakes: claimed once, judged once, routed, deferred, cancelled."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from itertools import count
from typing import Any

import pytest

from nudge.adapters.memory import MemoryLedger, MemoryRechecks, MemoryRouter, MemoryUsageStore
from nudge.model.decisions import Decision
from nudge.model.ledger import UserLedger
from nudge.model.queue import DecisionBatch
from nudge.model.state import Stamped, UserState
from nudge.model.versioned import Versioned
from nudge.ports import RouteFailed
from nudge.rulebook.guardrails import Guardrails, GuardrailsFile
from nudge.rulebook.ruleset import RuleSet
from nudge.services.dispatch import DispatchPorts, dispatch
from tests.shipped import UNHELD

RULES = UNHELD  # no holdouts: these tests are about what else happens to a decision
NOON = datetime(2025, 3, 4, 17, 0, tzinfo=UTC)  # 12:00 in New York
_ids = count()


def rules_with(**changes: Any) -> RuleSet:
    spec = GuardrailsFile.model_validate(
        {"sender": {"email_from": "hello@acme.example"}, "holdout": {"control_group": 0}, **changes}
    )
    return dataclasses.replace(RULES, guardrails=Guardrails(spec, "guardrails.yaml"))


def world(users: tuple[str, ...] = ("u1",)) -> DispatchPorts:
    usage = MemoryUsageStore()
    for user in users:
        traits = {
            "email": "ada@example.com",
            "timezone": "America/New_York",
            "consent": {"email": True, "push": True},
            "push_token": "t",
        }
        stamped = {k: Stamped(v=v, at=NOON, mid="m") for k, v in traits.items()}
        usage.users[user] = Versioned(UserState(user_id=user, traits=stamped), 1)
    return DispatchPorts(ledger=MemoryLedger(), usage=usage, router=MemoryRouter(), rechecks=MemoryRechecks())


def decision(rule: str, user: str = "u1", at: datetime = NOON, decision_id: str | None = None) -> Decision:
    spec = RULES.trigger_by_id[rule].spec
    action = spec.action
    return Decision(
        decision_id=decision_id or f"d{next(_ids)}",
        user=user,
        account="a1",
        rule=rule,
        kind="escalation" if action == "escalate" else spec.kind,
        action=action,
        channel={"escalate": "cs"}.get(action, action),
        template=spec.template,
        priority=spec.priority,
        reason="test",
        facts={},
        decided_at=at,
    )


def batch(*decisions: Decision, user: str = "u1", **extra: Any) -> DecisionBatch:
    decided_at = extra.pop("decided_at", NOON)
    return DecisionBatch(user=user, account="a1", decided_at=decided_at, decisions=list(decisions), **extra)


def routed(ports: DispatchPorts) -> list[str]:
    assert isinstance(ports.router, MemoryRouter)
    return [d.decision_id for d in ports.router.routed]


def test_a_batch_dispatched_twice_is_judged_and_recorded_once() -> None:
    ports = world()
    b = batch(decision("finish_setup"), decision("upgrade_power_user"))
    first = dispatch(b, RULES, ports, NOON)
    second = dispatch(b, RULES, ports, NOON + timedelta(seconds=1))
    assert sorted(v.outcome for v in first.verdicts) == ["send", "suppressed"]
    assert second.verdicts == []
    assert sorted(second.duplicates) == sorted(d.decision_id for d in b.decisions)
    assert len(ports.ledger.entries_of("u1")) == 2
    # The one send is routed again (still queued: its channel may not have got it); the action
    # function's claim makes the second copy send nothing.
    sent = [v.decision.decision_id for v in first.verdicts if v.outcome == "send"]
    assert routed(ports) == sent + sent


def test_a_failed_route_is_retried_by_redelivery_and_nothing_is_judged_twice() -> None:
    ports = world()
    assert isinstance(ports.router, MemoryRouter)
    b = batch(decision("finish_setup"))
    ports.router.fail = True
    try:
        dispatch(b, RULES, ports, NOON)
        raise AssertionError("the route failure must surface")
    except RouteFailed:
        pass
    ports.router.fail = False
    again = dispatch(b, RULES, ports, NOON)
    assert again.duplicates == [b.decisions[0].decision_id]
    assert routed(ports) == again.duplicates


class SlowLedger(MemoryLedger):
    """Reads take a while, as over a network: concurrent dispatches interleave between read and write."""

    def load(self, user_id: str, account_id: str | None, keys: Sequence[tuple[str, str]]) -> UserLedger:
        view = super().load(user_id, account_id, keys)
        time.sleep(0.005)
        return view


def test_eight_concurrent_evaluations_for_one_user_never_break_a_cap() -> None:
    # Given at most 2 messages a day, and 8 evaluations of one user dispatched at the same moment,
    # each deciding a different rule (the last two repeat rules, under fresh decision ids)
    rules = rules_with(caps={"all": [{"max": 2, "per": "day"}]})
    names = [t.id for t in RULES.triggers if t.spec.action != "escalate"]
    picks = [names[n % len(names)] for n in range(8)]
    ports = dataclasses.replace(world(), ledger=SlowLedger())
    results = []
    barrier = threading.Barrier(8)

    def one(rule: str) -> None:
        barrier.wait()
        results.append(dispatch(batch(decision(rule)), rules, ports, NOON))

    threads = [threading.Thread(target=one, args=(rule,)) for rule in picks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Then exactly two are sent, whichever won, and the rest say why not
    verdicts = [v for r in results for v in r.verdicts]
    assert len(verdicts) == 8
    assert [v.outcome for v in verdicts].count("send") == 2
    assert {v.reason for v in verdicts if v.outcome != "send"} <= {"cap_all_day", "cooldown"}
    assert len(routed(ports)) == 2
    assert sum(r.conflicts for r in results) > 0  # they did collide, and the ledger sorted it out


def test_one_escalation_per_account_whichever_user_raises_it_and_marketing_waits() -> None:
    ports = world(("u1", "u2"))
    shared = "esc-a1-window"
    first = dispatch(
        batch(decision("rescue_declining"), decision("at_risk_account", decision_id=shared)),
        RULES,
        ports,
        NOON,
    )
    second = dispatch(
        batch(decision("at_risk_account", user="u2", decision_id=shared), user="u2"), RULES, ports, NOON
    )
    outcomes = {v.decision.rule: (v.outcome, v.reason) for v in first.verdicts}
    assert outcomes == {
        "at_risk_account": ("send", ""),
        "rescue_declining": ("suppressed", "account_escalated"),
    }
    assert second.duplicates == [shared]
    assert routed(ports).count(shared) == 2  # routed again while queued; the desk dedupes
    # A later marketing decision for another user of the account waits for CS too
    later = dispatch(
        batch(decision("upgrade_power_user", user="u2"), user="u2"), RULES, ports, NOON + timedelta(days=1)
    )
    assert [(v.outcome, v.reason) for v in later.verdicts] == [("suppressed", "account_escalated")]
    # ... until CS marks it handled
    assert ports.ledger.handle_escalation("a1", "cs-agent", NOON + timedelta(days=2))
    after = dispatch(
        batch(decision("upgrade_power_user", user="u2"), user="u2"), RULES, ports, NOON + timedelta(days=3)
    )
    assert [v.outcome for v in after.verdicts] == ["send"]


def test_a_deferred_decision_is_scheduled_then_judged_again_when_it_returns() -> None:
    rules = rules_with(quiet_hours={"start": "21:00", "end": "08:00", "channels": ["push"]})
    ports = world()
    night = datetime(2025, 3, 5, 3, 0, tzinfo=UTC)  # 22:00 in New York
    d = decision("rescue_declining", at=night)
    first = dispatch(batch(d), rules, ports, night)
    assert [v.outcome for v in first.verdicts] == ["deferred"]
    assert isinstance(ports.rechecks, MemoryRechecks)
    until = ports.rechecks.deferred[("u1", d.decision_id)]
    assert until == datetime(2025, 3, 5, 13, 0, tzinfo=UTC)
    # When the sweep finds the rule still holds at 08:00, the decision returns under its id
    back = dispatch(
        batch(d.model_copy(update={"decided_at": until}), returning=[d.decision_id], decided_at=until),
        rules,
        ports,
        until,
    )
    assert [v.outcome for v in back.verdicts] == ["send"]
    assert routed(ports) == [d.decision_id]
    # and a second return of it is a duplicate
    again = batch(d, returning=[d.decision_id], decided_at=until)
    assert dispatch(again, rules, ports, until + timedelta(minutes=1)).duplicates == [d.decision_id]


def test_a_deferred_decision_whose_rule_lapsed_is_cancelled_not_sent() -> None:
    rules = rules_with(quiet_hours={"start": "21:00", "end": "08:00", "channels": ["push"]})
    ports = world()
    night = datetime(2025, 3, 5, 3, 0, tzinfo=UTC)
    d = decision("rescue_declining", at=night)
    dispatch(batch(d), rules, ports, night)
    later = night + timedelta(hours=10)
    result = dispatch(batch(lapsed=[d.decision_id], decided_at=later), rules, ports, later)
    assert result.cancelled == [d.decision_id]
    assert routed(ports) == []
    entry = ports.ledger.get("USER#u1", d.decision_id)
    assert entry is not None
    assert (entry.outcome, entry.reason) == ("cancelled", "no_longer_holds")


def test_nothing_is_sent_or_written_for_a_user_without_state() -> None:
    ports = world(())
    result = dispatch(batch(decision("finish_setup")), RULES, ports, NOON)
    assert result.verdicts == []
    assert ports.ledger.entries_of("u1") == []
    assert routed(ports) == []


def test_a_merged_id_gets_nothing_and_the_log_line_does_not_carry_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given a user id (an email, as ids may be) whose profile was merged into another user
    ports = world(())
    assert isinstance(ports.usage, MemoryUsageStore)
    pointer = UserState(user_id="ada@example.com", merged_into="u2")
    ports.usage.users["ada@example.com"] = Versioned(pointer, 2)
    # When a decision for it is dispatched
    result = dispatch(
        batch(decision("finish_setup", user="ada@example.com"), user="ada@example.com"), RULES, ports, NOON
    )
    # Then nothing is sent, and the line saying so names no id
    assert result.verdicts == []
    assert routed(ports) == []
    line = next(r for r in caplog.records if "merged into another user" in r.getMessage())
    assert "user_id" not in line.__dict__
    assert "ada@example.com" not in str(line.__dict__)


def test_a_declining_user_without_a_device_is_rescued_by_email_and_the_ledger_says_why() -> None:
    # Given a user with an email address and no push device (the rescue names push, then email)
    ports = world()
    assert isinstance(ports.usage, MemoryUsageStore)
    state = ports.usage.users["u1"].value
    traits = {k: v for k, v in state.traits.items() if k != "push_token"}
    ports.usage.users["u1"] = Versioned(state.model_copy(update={"traits": traits}), 2)
    spec = RULES.trigger_by_id["rescue_declining"].spec
    rescue = decision("rescue_declining").model_copy(update={"channels": list(spec.channels)})
    # When dispatch judges the rescue
    result = dispatch(batch(rescue), RULES, ports, NOON)
    # Then it is routed to the email queue, and the ledger records the channel and why
    assert [(v.outcome, v.decision.channel) for v in result.verdicts] == [("send", "email")]
    assert isinstance(ports.router, MemoryRouter)
    assert [(d.decision_id, d.channel) for d in ports.router.routed] == [(rescue.decision_id, "email")]
    (entry,) = ports.ledger.entries_of("u1")
    assert (entry.decision.channel, entry.channel_why) == ("email", "push: no_address; email: chosen")
