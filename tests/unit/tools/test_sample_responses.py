"""The sample users' answers to messages: deterministic, per the model's shares, after the message."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from nudge.rulebook.loader import load_rules
from nudge.tools.samples.responses import MODEL, engagement, respond, response_key
from tests.shipped import ROOT

SENT = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def answers(rule: str, n: int = 2000) -> list[list[dict[str, object]]]:
    return [respond(f"d-{rule}-{i}", rule, f"u{i}", "acct", SENT) for i in range(n)]


def test_answers_are_deterministic_per_decision() -> None:
    assert answers("finish_setup", 50) == answers("finish_setup", 50)


def test_the_share_who_answer_follows_the_model_and_dormant_rescue_never_works() -> None:
    for rule, model in MODEL.items():
        share = sum(1 for a in answers(rule) if a) / 2000
        assert abs(share - model.share) < 0.04, rule
    assert all(a == [] for a in answers("rescue_dormant"))


def test_an_answer_is_the_rules_events_in_its_window_after_the_message() -> None:
    got = next(a for a in answers("finish_setup") if a)
    assert [m["event"] for m in got] == ["login", "setup_completed"]
    times = [datetime.fromisoformat(str(m["timestamp"])) for m in got]
    low, high = MODEL["finish_setup"].after
    assert SENT + low <= times[0] <= SENT + high + timedelta(minutes=10)
    assert times == sorted(times)
    assert len({m["messageId"] for m in got}) == len(got)


def test_an_upgrade_answer_sets_the_accounts_plan() -> None:
    got = next(a for a in answers("upgrade_power_user") if a)
    group = got[-1]
    assert group["type"] == "group"
    assert group["groupId"] == "acct"
    assert group["traits"] == {"plan": "business"}


def test_readers_open_some_emails_and_click_those_they_act_on() -> None:
    # Given a thousand finish_setup emails
    ids = [f"d-{n}" for n in range(1000)]
    read = [engagement(i, "finish_setup") for i in ids]
    # Then whoever acts on the message (respond answers) clicked it, and a click implies an open
    for decision_id, (opened, clicked) in zip(ids, read, strict=True):
        acted = bool(respond(decision_id, "finish_setup", "u", None, datetime(2026, 3, 2, tzinfo=UTC)))
        assert clicked == acted
        assert opened or not clicked
    # ...more open than click, and not everyone opens; the same email reads the same way twice
    opens, clicks = sum(o for o, _ in read), sum(c for _, c in read)
    assert clicks < opens < 1000
    assert [engagement(i, "finish_setup") for i in ids] == read
    # ...and a rule nobody answers (rescue_dormant) is never clicked
    assert not any(engagement(i, "rescue_dormant")[1] for i in ids)


def test_the_shipped_journeys_sends_are_answered_per_step() -> None:
    # Given the shipped journeys' send steps (a journey decision's rule is the journey)
    rules = load_rules(ROOT / "rules")
    keys = [response_key(j.id, s.id) for j in rules.journeys for s in j.steps.values() if s.kind == "send"]
    # Then the rescue's quick win and the onboarding's nudges have a response model, and only a
    # journey's step reads it, not a rule of the same name
    assert "declining_rescue:quick_win" in keys
    assert "onboarding:finish_setup" in keys
    assert any(a for a in answers(response_key("declining_rescue", "quick_win"), 200))
    assert response_key("rescue_dormant", None) == "rescue_dormant"
