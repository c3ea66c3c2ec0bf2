"""The in-app channel through its services, on fakes: a decision lands in the inbox once, and what
the user does with a message folds back as an event in their usage state."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from nudge.adapters.memory import (
    MemoryEmailSender,
    MemoryInbox,
    MemoryLedger,
    MemoryNotifier,
    MemoryRechecks,
    MemoryRouter,
    MemorySegmentStore,
    MemoryUsageStore,
)
from nudge.model.decisions import Decision
from nudge.model.queue import DecisionBatch
from nudge.model.state import Stamped, UserState
from nudge.model.versioned import Versioned
from nudge.rulebook.loader import load_rules
from nudge.services.deliver import Channels, DeliverPorts, deliver
from nudge.services.dispatch import DispatchPorts, dispatch
from nudge.services.export import export_user
from nudge.services.inbox import (
    AnswerRefused,
    InboxPorts,
    NotInInbox,
    act,
    answer_survey,
    read_inbox,
    user_checklist,
)
from nudge.services.ingest import IngestLimits
from tests.shipped import ONE_SHOT_DIR, UNHELD, without_holdouts

RULES = UNHELD
NOON = datetime(2025, 3, 4, 17, 0, tzinfo=UTC)
LATER = NOON + timedelta(seconds=30)
RULE = "ask_setup_blocker"


def _world(user: str) -> tuple[MemoryUsageStore, MemoryLedger, MemoryRouter, MemoryInbox]:
    usage = MemoryUsageStore()
    traits = {"first_name": Stamped(v="Ada", at=NOON, mid="m")}  # no address of any kind
    usage.users[user] = Versioned(UserState(user_id=user, traits=traits), 1)
    return usage, MemoryLedger(), MemoryRouter(), MemoryInbox()


def _decision(user: str, decision_id: str = "d-inapp") -> Decision:
    spec = RULES.trigger_by_id[RULE].spec
    return Decision(
        decision_id=decision_id,
        user=user,
        account=None,
        rule=RULE,
        kind=spec.kind,
        action="in_app",
        channel="in_app",
        template=spec.template,
        priority=spec.priority,
        reason="test",
        facts={},
        decided_at=NOON,
    )


def _sent(user: str) -> tuple[MemoryUsageStore, MemoryInbox, str]:
    """A survey decided, dispatched and delivered to `user`'s inbox the real way."""
    usage, ledger, router, inbox = _world(user)
    batch = DecisionBatch(user=user, decided_at=NOON, decisions=[_decision(user)])
    result = dispatch(batch, RULES, DispatchPorts(ledger, usage, router, MemoryRechecks()), NOON)
    assert [(v.outcome, v.reason) for v in result.verdicts] == [("send", "")]
    [delivery] = router.routed
    ports = DeliverPorts(
        ledger=ledger,
        usage=usage,
        channels=Channels(email=MemoryEmailSender(), notifier=MemoryNotifier(), inbox=inbox),
        unsubscribe_secrets=(b"s" * 32,),
        unsubscribe_url="https://api.example/v1/unsubscribe",
    )
    first = deliver(delivery, RULES, ports, LATER)
    second = deliver(delivery, RULES, ports, LATER)
    assert (first.result, second.result) == ("sent", "duplicate")
    return usage, inbox, delivery.decision_id


def _ports(usage: MemoryUsageStore, inbox: MemoryInbox) -> InboxPorts:
    return InboxPorts(inbox=inbox, usage=usage, plan=RULES.plan, limits=IngestLimits())


def test_an_in_app_decision_needs_no_address_and_lands_in_the_inbox_once() -> None:
    _, inbox, message_id = _sent("inapp-once")
    [message] = read_inbox(inbox, "inapp-once", LATER)
    assert message.message_id == message_id
    assert message.survey is not None
    assert message.survey.property == "blocker"
    assert message.link == "https://app.acme.example/setup"  # the template's link, rendered
    assert message.expires_at == LATER + timedelta(days=14)
    assert len(inbox.messages) == 1


def test_an_expired_message_leaves_the_inbox() -> None:
    _, inbox, _ = _sent("inapp-expiry")
    assert read_inbox(inbox, "inapp-expiry", LATER + timedelta(days=14)) == []


def test_seen_clicked_and_dismissed_fold_back_as_events_counted_once_each() -> None:
    usage, inbox, message_id = _sent("inapp-acts")
    ports = _ports(usage, inbox)
    # When the page reports seen twice (two visits), then a click, then a dismissal
    act(ports, "inapp-acts", message_id, "seen", LATER)
    act(ports, "inapp-acts", message_id, "seen", LATER + timedelta(minutes=1))
    act(ports, "inapp-acts", message_id, "clicked", LATER + timedelta(minutes=2))
    done = act(ports, "inapp-acts", message_id, "dismissed", LATER + timedelta(minutes=3))
    # Then each event counts once, the message is dismissed and leaves the inbox
    state = usage.users["inapp-acts"].value
    counts = {name: stats.count for name, stats in state.events.items()}
    assert counts == {"in_app_seen": 1, "in_app_clicked": 1, "in_app_dismissed": 1}
    assert done.status == "dismissed"
    assert read_inbox(inbox, "inapp-acts", LATER + timedelta(minutes=4)) == []
    # and a late "seen" does not bring it back
    assert act(ports, "inapp-acts", message_id, "seen", LATER + timedelta(minutes=5)).status == "dismissed"


def test_a_survey_answer_lands_as_survey_answered_with_the_answer_as_its_property() -> None:
    usage, inbox, message_id = _sent("inapp-answer")
    ports = _ports(usage, inbox)
    done = answer_survey(ports, "inapp-answer", message_id, "too_complex", LATER)
    assert (done.status, done.answer) == ("answered", "too_complex")
    state = usage.users["inapp-answer"].value
    answered = state.events["survey_answered"]
    assert answered.count == 1
    # the property is kept for rules and templates (its last value)
    assert answered.props is not None
    assert answered.props.last["blocker"].v == "too_complex"
    # A second answer is refused, naming the message
    with pytest.raises(AnswerRefused) as refused:
        answer_survey(ports, "inapp-answer", message_id, "no_time", LATER)
    assert refused.value.field == "messageId"
    assert "answered already" in refused.value.message
    assert usage.users["inapp-answer"].value.events["survey_answered"].count == 1


@pytest.mark.parametrize(
    ("user", "answer", "at", "field", "says"),
    [
        ("someone-else", "no_time", LATER, "messageId", "no such message"),
        ("inapp-refused", "no_time", LATER + timedelta(days=15), "messageId", "expired"),
        ("inapp-refused", "the cat ate it", LATER, "answer", "must be one of"),
    ],
    ids=["foreign", "expired", "not-offered"],
)
def test_an_answer_to_an_expired_or_foreign_survey_is_refused_and_nothing_lands(
    user: str, answer: str, at: datetime, field: str, says: str
) -> None:
    usage, inbox, message_id = _sent("inapp-refused")
    with pytest.raises(AnswerRefused) as refused:
        answer_survey(_ports(usage, inbox), user, message_id, answer, at)
    assert (refused.value.field, says in refused.value.message) == (field, True)
    assert "survey_answered" not in usage.users["inapp-refused"].value.events


def test_acting_on_another_users_message_is_not_found() -> None:
    usage, inbox, message_id = _sent("inapp-owner")
    with pytest.raises(NotInInbox):
        act(_ports(usage, inbox), "intruder", message_id, "seen", LATER)


def test_the_checklist_reads_the_users_milestones() -> None:
    usage, _, _, _ = _world("inapp-checklist")
    found = user_checklist(usage, RULES.plan, "inapp-checklist")
    assert (found.done, found.total, found.next) == (0, len(RULES.plan.milestones), "setup_done")
    unknown = user_checklist(usage, RULES.plan, "never-seen")
    assert unknown.done == 0


def test_an_in_app_message_takes_no_slot_from_an_email_decided_with_it() -> None:
    # Given a user with an address, for whom an email and an in-app survey are decided together
    usage, ledger, router, _ = _world("inapp-slot")
    user = usage.users["inapp-slot"].value
    traits = {**user.traits, "email": Stamped(v="slot@example.com", at=NOON, mid="m")}
    usage.users["inapp-slot"] = Versioned(user.model_copy(update={"traits": traits}), 1)
    spec = RULES.trigger_by_id["finish_setup"].spec
    email = _decision("inapp-slot", "d-email").model_copy(
        update={"rule": "finish_setup", "action": "email", "channel": "email", "template": spec.template,
                "priority": spec.priority, "kind": spec.kind}
    )  # fmt: skip
    batch = DecisionBatch(user="inapp-slot", decided_at=NOON, decisions=[email, _decision("inapp-slot")])
    # When dispatch judges them
    result = dispatch(batch, RULES, DispatchPorts(ledger, usage, router, MemoryRechecks()), NOON)
    # Then both are sent: the survey waits in the inbox, interrupting nobody
    assert sorted((v.decision.channel, v.outcome) for v in result.verdicts) == [
        ("email", "send"),
        ("in_app", "send"),
    ]


def test_seen_reported_again_past_the_dedupe_window_still_counts_once() -> None:
    usage, inbox, message_id = _sent("inapp-late-seen")
    ports = _ports(usage, inbox)
    act(ports, "inapp-late-seen", message_id, "seen", LATER)
    # eight days later (messageIds are deduped for seven), the page reports it seen again
    act(ports, "inapp-late-seen", message_id, "seen", LATER + timedelta(days=8))
    assert usage.users["inapp-late-seen"].value.events["in_app_seen"].count == 1


def test_the_users_export_holds_their_in_app_messages_and_survey_answers() -> None:
    usage, inbox, message_id = _sent("inapp-export")
    answer_survey(_ports(usage, inbox), "inapp-export", message_id, "no_time", LATER)
    held = export_user(
        "inapp-export", usage=usage, segments=MemorySegmentStore(), ledger=MemoryLedger(), inbox=inbox
    )
    assert [(m["message_id"], m["status"], m["answer"]) for m in held.in_app] == [
        (message_id, "answered", "no_time")
    ]


def test_seen_after_a_click_past_the_dedupe_window_is_not_counted() -> None:
    usage, inbox, message_id = _sent("inapp-late-seen-2")
    ports = _ports(usage, inbox)
    act(ports, "inapp-late-seen-2", message_id, "seen", LATER)
    act(ports, "inapp-late-seen-2", message_id, "clicked", LATER + timedelta(minutes=1))
    # eight days later (past the seven-day dedupe), an old page reports it seen: a click was seen
    act(ports, "inapp-late-seen-2", message_id, "seen", LATER + timedelta(days=8))
    assert usage.users["inapp-late-seen-2"].value.events["in_app_seen"].count == 1


def test_a_locales_version_without_its_in_app_part_still_asks_the_survey(tmp_path: Path) -> None:
    # A French version that translates the texts but leaves `in_app:` out (lint allows it: it reads
    # the same variables): French readers must still get the survey, its link and expiry.
    rules_dir = tmp_path / "rules"
    shutil.copytree(ONE_SHOT_DIR, rules_dir)
    (rules_dir / "templates" / "setup_blocker_survey.fr.yaml").write_text(
        'subject: "Une question"\ntext: "Qu\'est-ce qui vous retient ?"\n', encoding="utf-8"
    )
    rules = without_holdouts(load_rules(rules_dir))
    usage, ledger, router, inbox = _world("inapp-fr")
    usage.users["inapp-fr"].value.traits["locale"] = Stamped(v="fr-FR", at=NOON, mid="m")
    batch = DecisionBatch(user="inapp-fr", decided_at=NOON, decisions=[_decision("inapp-fr")])
    dispatch(batch, rules, DispatchPorts(ledger, usage, router, MemoryRechecks()), NOON)
    [delivery] = router.routed
    channels = Channels(email=MemoryEmailSender(), notifier=MemoryNotifier(), inbox=inbox)
    ports = DeliverPorts(ledger, usage, channels, (b"s" * 32,), "https://api.example/v1/unsubscribe")
    assert deliver(delivery, rules, ports, LATER).result == "sent"
    [message] = read_inbox(inbox, "inapp-fr", LATER)
    assert message.title == "Une question"
    assert message.survey is not None
    assert message.survey.property == "blocker"
