"""The backtest predicts what would really be sent: every decision goes through dispatch (the same
guardrails and ledger production runs, in memory), so caps, quiet hours, priority and holdouts
change the prediction, and each suppressed decision says why."""

from __future__ import annotations

import shutil
from collections import Counter
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from nudge.adapters.memory import (
    MemoryDecisionPublisher,
    MemoryLedger,
    MemoryRouter,
    MemorySegmentStore,
    MemoryUsageStore,
)
from nudge.domain.journey_report import journey_instances, journey_tally
from nudge.model.messages import Message
from nudge.rulebook.loader import load_rules
from nudge.rulebook.ruleset import RuleSet
from nudge.services.backtest import BacktestResult, BacktestStores, backtest
from nudge.tools.rules.backtest import print_backtest
from nudge.tools.rules.history import parse_messages
from tests.shipped import ONE_SHOT_DIR

SHIPPED = ONE_SHOT_DIR
START = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # a Monday
DAY = timedelta(days=1)
NO_HOLDOUT = ("control_group: 5%", "control_group: 0%")


def rules_with(tmp_path: Path, *edits: tuple[str, str]) -> RuleSet:
    """The shipped rules with guardrails.yaml edited, and no rule holdout (every user treated)."""
    folder = tmp_path / "rules"
    shutil.copytree(SHIPPED, folder)
    guardrails = folder / "guardrails.yaml"
    text = guardrails.read_text(encoding="utf-8")
    for old, new in (NO_HOLDOUT, *edits):
        assert old in text, old
        text = text.replace(old, new)
    guardrails.write_text(text, encoding="utf-8")
    triggers = folder / "triggers.yaml"
    triggers.write_text(
        "\n".join(
            line for line in triggers.read_text(encoding="utf-8").splitlines() if "holdout:" not in line
        ),
        encoding="utf-8",
    )
    return load_rules(folder)


def history(zone: str) -> list[Message]:
    """One user who signs up and never finishes setup (finish_setup fires every 3 days for two
    weeks), and another user's visit 15 days later so the replay runs that long."""
    raw: list[dict[str, Any]] = [
        {
            "type": "identify",
            "userId": "ann",
            "traits": {"email": "ann@example.com", "timezone": zone},
            "timestamp": START.isoformat(),
            "messageId": "m1",
        },
        {
            "type": "track",
            "userId": "ann",
            "event": "signed_up",
            "timestamp": START.isoformat(),
            "messageId": "m2",
        },
        {
            "type": "track",
            "userId": "bob",
            "event": "page_viewed",
            "timestamp": (START + 15 * DAY).isoformat(),
            "messageId": "m3",
        },
    ]
    messages, skipped = parse_messages(raw, "history")
    assert skipped == []
    return messages


def run(rules: RuleSet, messages: list[Message]) -> BacktestResult:
    stores = BacktestStores(
        MemoryUsageStore(), MemorySegmentStore(), MemoryDecisionPublisher(), MemoryLedger(), MemoryRouter()
    )
    return backtest(rules, messages, stores)


def outcomes(result: BacktestResult, rule: str) -> Counter[tuple[str, str]]:
    return Counter((f.outcome, f.reason) for f in result.fires if f.rule == rule and f.user == "ann")


def test_a_cap_changes_the_prediction(tmp_path: Path) -> None:
    # Given the shipped caps, Ann gets a finish_setup reminder every 3 days for two weeks
    plain = run(rules_with(tmp_path / "a"), history("America/New_York"))
    sent = [f for f in plain.sent if f.rule == "finish_setup" and f.user == "ann"]
    assert len(sent) >= 4
    assert all(b.at - a.at >= 3 * DAY for a, b in pairwise(sent))
    # When email is capped at one a month
    capped_rules = rules_with(
        tmp_path / "b",
        ("    - {max: 1, per: day}\n    - {max: 3, per: week}\n  push", "    - {max: 1, per: 30d}\n  push"),
    )
    capped = run(capped_rules, history("America/New_York"))
    # Then one is sent and every later one is predicted suppressed by that cap
    counts = outcomes(capped, "finish_setup")
    assert counts[("send", "")] == 1
    assert counts[("suppressed", "cap_email_30d")] == len(sent) - 1


@pytest.mark.parametrize("when_quiet", ["drop", "defer"])
def test_quiet_hours_change_the_prediction(tmp_path: Path, when_quiet: str) -> None:
    # Given email inside the quiet hours, and Ann in Berlin: a day's end (23:59 UTC) is 00:59 there
    rules = rules_with(
        tmp_path,
        ("channels: [push, sms]", "channels: [email, push, sms]"),
        ("when_quiet: defer", f"when_quiet: {when_quiet}"),
    )
    result = run(rules, history("Europe/Berlin"))
    fires = [f for f in result.fires if f.rule == "finish_setup" and f.user == "ann"]
    assert len(fires) >= 4
    if when_quiet == "drop":
        # Then every reminder is predicted dropped for quiet hours
        assert {(f.outcome, f.reason) for f in fires} == {("suppressed", "quiet_hours")}
        return
    # Then each sent one was deferred and sent when the quiet hours ended: 08:00 in Berlin (07:00
    # UTC in winter), the next morning
    sent = [f for f in fires if f.sent]
    assert sent
    assert all(f.settled_at == f.at.replace(hour=7, minute=0, second=0, microsecond=0) + DAY for f in sent)
    # ... which moves the cooldown: the next reminder, decided 3 days after the first, is within
    # 3 days of that later send, and is predicted suppressed, as dispatch would
    assert {(f.outcome, f.reason) for f in fires if not f.sent} == {("suppressed", "cooldown")}
    # ... while in New York (18:59 at a day's end) the same reminders go out at once, more of them
    direct = [f for f in run(rules, history("America/New_York")).sent if f.user == "ann"]
    assert all(f.settled_at == f.at for f in direct)
    assert len(direct) > len(sent)


def test_the_same_history_and_rules_predict_the_same(tmp_path: Path) -> None:
    rules = rules_with(tmp_path)
    first, second = run(rules, history("Europe/Berlin")), run(rules, history("Europe/Berlin"))
    assert [(f.decision_id, f.outcome, f.reason) for f in first.fires] == [
        (f.decision_id, f.outcome, f.reason) for f in second.fires
    ]


WELCOME = """
id: welcome
kind: onboarding
entry: {event: {name: signed_up}}
goal: {event: project_created, within: 7d}
steps:
  - id: hello
    send: {channel: email, template: first_project}
  - id: pause
    wait: 2d
  - id: nudge
    send: {channel: email, template: first_project}
"""


def test_the_backtest_tallies_each_journey_per_step_and_week(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a journey entered on signing up, with a goal of a first project
    rules_with(tmp_path)
    folder = tmp_path / "rules"
    (folder / "journeys" / "welcome.yaml").write_text(WELCOME, encoding="utf-8")
    rules = load_rules(folder)
    raw: list[dict[str, Any]] = []
    # ann signs up and never creates a project; bob creates one the next day; cat signs up a week later
    for n, (user, day) in enumerate((("ann", 0), ("bob", 0), ("cat", 7))):
        at = (START + day * DAY).isoformat()
        raw.append(
            {
                "type": "identify",
                "userId": user,
                "traits": {"email": f"{user}@example.com"},
                "timestamp": at,
                "messageId": f"i{n}",
            }
        )
        raw.append(
            {"type": "track", "userId": user, "event": "signed_up", "timestamp": at, "messageId": f"s{n}"}
        )
    raw.append(
        {
            "type": "track",
            "userId": "bob",
            "event": "project_created",
            "timestamp": (START + DAY).isoformat(),
            "messageId": "p",
        }
    )
    raw.append(
        {
            "type": "track",
            "userId": "dan",
            "event": "page_viewed",
            "timestamp": (START + 8 * DAY).isoformat(),
            "messageId": "d",
        }
    )
    messages, skipped = parse_messages(raw, "history")
    assert skipped == []
    result = run(rules, messages)
    # Then each user's instance is kept, and the tally says who reached which step and how each ended
    tally = journey_tally(rules.journey_by_id["welcome"], journey_instances(result.journeys, "welcome"))
    assert tally.entered == 3
    assert tally.reached == {"hello": 3, "pause": 3, "nudge": 1}
    assert tally.converted == 1
    assert tally.ended == {"completed": 1}
    assert tally.at_step == {"pause": 1}  # cat, one day into the 2-day wait
    weeks = {w.week: w for w in tally.weeks}
    assert (weeks["2026-W10"].entered, weeks["2026-W10"].converted) == (2, 1)
    assert weeks["2026-W10"].ended == {"completed": 1}
    assert weeks["2026-W11"].entered == 1
    # And its sends went through dispatch, as the journey's id
    assert Counter(f.user for f in result.fires if f.rule == "welcome") == {"ann": 2, "bob": 1, "cat": 1}
    # And `nudge rules backtest` prints the tally
    print_backtest(rules, result, weekly=False, elapsed=0, source="history")
    out = capsys.readouterr().out
    assert "Journey welcome: 3 entered (0 held out), 1 converted, ended otherwise: completed 1" in out
    assert "Journey welcome per ISO week" in out
