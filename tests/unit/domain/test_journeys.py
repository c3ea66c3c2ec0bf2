"""The journey engine (nudge.domain.journeys), pure: the declining rescue walked step by step with
`now` moved by hand, and the rules every journey keeps (entry once per key, waits counted from the
step, goal first, deterministic ids and assignment, orphans ended with a reason)."""

from __future__ import annotations

import shutil
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from nudge.conditions.tree import Context
from nudge.domain.evaluate import evaluate
from nudge.domain.fold import fold
from nudge.domain.journey_steps import assigned
from nudge.domain.journeys import JourneyRun, run_journey, run_journeys
from nudge.domain.verdicts import in_group
from nudge.model.journeys import HOLDOUT, Decided, JourneyInstance, instance_key
from nudge.model.limits import JOURNEY_DECISIONS_KEPT
from nudge.model.messages import Identify, Message, Track
from nudge.model.state import UserState
from nudge.rulebook.journeys import Journey
from nudge.rulebook.loader import load_rules
from nudge.rulebook.ruleset import RuleSet

ROOT = Path(__file__).resolve().parents[3]
START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)  # a Monday
DAY = timedelta(days=1)
HOUR = timedelta(hours=1)

SPLIT = """
id: split_test
kind: onboarding
entry: {event: {name: premium_feature_attempted, key: feature}}
re_entry: every_time
goal: {event: invoice_paid, within: 14d}
steps:
  - id: pick
    split:
      - {weight: 50, step: by_email}
      - {weight: 50, step: by_push}
  - id: by_email
    send:
      channel: email
      variants:
        - {template: upgrade_offer, weight: 70}
        - {template: sso_offer, weight: 30}
    next: evening
  - id: by_push
    send: {channel: push, template: upgrade_offer}
  - id: evening
    wait: {until_time: "18:30"}
  - id: tag
    update: {trait: plan, value: team}
"""


def rules_with(tmp: Path, **journeys: str) -> RuleSet:
    target = tmp / "rules"
    shutil.copytree(ROOT / "rules", target)
    shutil.copy(ROOT / "tests" / "journeys" / "declining_rescue.yaml", target / "journeys")
    for name, text in journeys.items():
        (target / "journeys" / f"{name}.yaml").write_text(text, encoding="utf-8")
    return load_rules(target)


@pytest.fixture(scope="module")
def rules(tmp_path_factory: pytest.TempPathFactory) -> RuleSet:
    return rules_with(tmp_path_factory.mktemp("journeys"), split=SPLIT)


class Person:
    """One user's state folded from their events, and their journey instances, moved by hand."""

    def __init__(self, rules: RuleSet, journey: str, user: str = "ann", tz: str = "UTC") -> None:
        self.rules = rules
        self.journey: Journey = rules.journey_by_id[journey]
        self.user = user
        self.state: UserState | None = None
        self.instances: dict[str, JourneyInstance] = {}
        self.messages = 0
        self.identify(START - 60 * DAY, timezone=tz, email=f"{user}@example.com")

    def _fold(self, message: Message, at: datetime) -> None:
        self.messages += 1
        self.state = fold(self.state, self.user, [message], self.rules.plan, at)

    def did(self, event: str, at: datetime, **properties: Any) -> None:
        self._fold(
            Track(
                userId=self.user,
                event=event,
                timestamp=at,
                messageId=f"m{self.messages}",
                properties=properties,
            ),
            at,
        )

    def identify(self, at: datetime, **traits: Any) -> None:
        self._fold(Identify(userId=self.user, traits=traits, timestamp=at, messageId=f"m{self.messages}"), at)

    def run(self, now: datetime, *, entered: str | None = None, **facts: Any) -> JourneyRun:
        assert self.state is not None
        evaluation = evaluate(self.rules, self.state, None, None, now)
        ctx = Context(self.state, now).scored(evaluation.segment or "", 0, "", 0, "")
        merged = {**evaluation.facts, **facts}
        run = run_journey(self.journey, self.instances, ctx, merged, entered_segment=entered)
        self.instances = run.instances
        return run

    @property
    def only(self) -> JourneyInstance:
        (instance,) = self.instances.values()
        return instance


def templates(run: JourneyRun) -> list[str]:
    return [d.template if d.action != "escalate" else "escalate" for d in run.decisions]


def not_held(rules: RuleSet, journey: str) -> str:
    """A user id the journey does not hold out (holdouts are a hash of the user)."""
    holdout = rules.journey_by_id[journey].spec.holdout
    return next(u for u in (f"user{i}" for i in range(100)) if not in_group(f"journey:{journey}", u, holdout))


# ------------------------------------------------------------------------------ the rescue, walked


def test_the_rescue_runs_reminder_wait_survey_answer_branch_and_escalates_a_high_value_account(
    rules: RuleSet,
) -> None:
    # Given a user who just entered the declining segment
    ann = Person(rules, "declining_rescue", not_held(rules, "declining_rescue"))
    ann.did("project_created", START - 20 * DAY)
    # When they enter: the quick win goes out and the journey waits 3 days
    run = ann.run(START, entered="declining")
    assert templates(run) == ["declining_nudge"]
    assert ann.only.step == "pause"
    assert run.wake_at == START + 3 * DAY
    # Nothing moves before the wait is over, however often evaluated
    assert templates(ann.run(START + 2 * DAY)) == []
    # Then the survey, and a wait for the answer with a 4-day timeout
    run = ann.run(START + 3 * DAY + HOUR)
    assert templates(run) == ["rescue_survey"]
    assert ann.only.step == "answer"
    assert run.wake_at == START + 3 * DAY + HOUR + 4 * DAY
    # The answer "too complex" sends the walkthrough; a high-value account is escalated after it
    ann.did("survey_answered", START + 4 * DAY, blocker="too_complex")
    run = ann.run(START + 4 * DAY, account_band="high")
    assert templates(run) == ["rescue_walkthrough", "escalate"]
    assert run.decisions[1].channel == "cs"
    assert run.decisions[1].reason.startswith("Offer the team")
    assert ann.only.reason == "completed"
    assert not ann.only.live
    # The instance kept the path it took, for the report's flow (users per step and edge)
    assert ann.only.path == (
        "quick_win",
        "pause",
        "survey",
        "answer",
        "route",
        "walkthrough",
        "high_value",
        "customer_success",
    )


def test_a_low_value_account_is_not_escalated_and_an_unanswered_survey_times_out(rules: RuleSet) -> None:
    bob = Person(rules, "declining_rescue", not_held(rules, "declining_rescue"))
    bob.did("project_created", START - 20 * DAY)
    bob.run(START, entered="declining")
    bob.run(START + 3 * DAY)
    # No answer: at the timeout the journey goes to the high-value check, which sends nothing here
    run = bob.run(START + 8 * DAY, account_band="low")
    assert templates(run) == []
    assert bob.only.reason == "completed"


def test_the_user_coming_back_converts_the_instance_whatever_step_it_is_at(rules: RuleSet) -> None:
    cat = Person(rules, "declining_rescue", not_held(rules, "declining_rescue"))
    cat.did("project_created", START - 20 * DAY)
    cat.run(START, entered="declining")
    # Meaningful use while waiting: converted at the next evaluation, nothing more sent
    cat.did("report_exported", START + DAY)
    run = cat.run(START + 3 * DAY + HOUR)
    assert templates(run) == []
    assert cat.only.reason == "converted"
    assert cat.only.converted_at == START + 3 * DAY + HOUR
    assert cat.only.goal == "event:any"  # what the Journey Converted change names


def test_an_exit_condition_ends_the_instance_without_converting(rules: RuleSet) -> None:
    dan = Person(rules, "declining_rescue", not_held(rules, "declining_rescue"))
    dan.did("project_created", START - 20 * DAY)
    dan.run(START, entered="declining")
    run = dan.run(START + DAY, segment="dormant")
    assert templates(run) == []
    assert dan.only.reason == "exited"
    assert dan.only.converted_at is None


def test_a_late_evaluation_sends_what_is_due_once_and_times_the_answer_from_the_send(rules: RuleSet) -> None:
    eve = Person(rules, "declining_rescue", not_held(rules, "declining_rescue"))
    eve.did("project_created", START - 20 * DAY)
    eve.run(START, entered="declining")
    # Evaluated only 5 days later (a paused sweep): the survey goes now, once, and the 4 days to
    # answer count from when it went out.
    run = eve.run(START + 5 * DAY)
    assert templates(run) == ["rescue_survey"]
    assert run.wake_at == START + 5 * DAY + 4 * DAY
    assert templates(eve.run(START + 5 * DAY + HOUR)) == []


def test_the_same_instance_evaluated_twice_decides_the_same_ids(rules: RuleSet) -> None:
    # Two evaluations of the same starting state (a redelivered record, or two racing evaluators)
    # decide the same ids, so dispatch's claim sends once; a later visit of a step gets a new one.
    fay = Person(rules, "declining_rescue", not_held(rules, "declining_rescue"))
    fay.did("project_created", START - 20 * DAY)
    first = fay.run(START, entered="declining")
    fay.instances = {}
    again = fay.run(START + timedelta(seconds=5), entered="declining")
    assert [d.decision_id for d in first.decisions] == [d.decision_id for d in again.decisions]
    survey = fay.run(START + 3 * DAY + HOUR)
    assert survey.decisions[0].decision_id not in {d.decision_id for d in first.decisions}


def test_an_instance_remembers_its_decisions_newest_kept_and_carried_to_its_next_run(
    rules: RuleSet,
) -> None:
    # What dispatch checks a journey's decision against: the saved instance made it (its run, seq)
    kit = Person(rules, "declining_rescue", not_held(rules, "declining_rescue"))
    kit.did("project_created", START - 20 * DAY)
    [quick_win] = kit.run(START, entered="declining").decisions
    assert (quick_win.run, quick_win.seq) == (0, 0)
    assert kit.only.decided == (Decided(0, 0, quick_win.decision_id),)
    [survey] = kit.run(START + 3 * DAY + HOUR).decisions
    assert (survey.run, survey.seq) == (0, 2)
    assert [d.decision_id for d in kit.only.decided or ()] == [quick_win.decision_id, survey.decision_id]
    # Bounded: the newest are kept
    old = tuple(Decided(0, -i, f"old{i}") for i in range(JOURNEY_DECISIONS_KEPT, 0, -1))
    kit.instances = {k: i.model_copy(update={"decided": old}) for k, i in kit.instances.items()}
    kit.did("survey_answered", START + 4 * DAY, blocker="too_complex")
    [walkthrough] = kit.run(START + 4 * DAY, account_band="low").decisions
    kept = kit.only.decided or ()
    assert len(kept) == JOURNEY_DECISIONS_KEPT
    assert kept[-1] == Decided(0, walkthrough.seq or 0, walkthrough.decision_id)
    assert kept[0].decision_id == "old9"
    # A new run of the key starts from the last one's: a decision of it may still be on its way
    [again] = kit.run(START + 41 * DAY, entered="declining", segment="declining").decisions
    assert again.run == 1
    assert (kit.only.decided or ())[-2:] == (kept[-1], Decided(1, 0, again.decision_id))


def test_one_live_instance_per_user_and_re_entry_as_the_journey_says(rules: RuleSet) -> None:
    gus = Person(rules, "declining_rescue", not_held(rules, "declining_rescue"))
    gus.did("project_created", START - 20 * DAY)
    gus.run(START, entered="declining")
    # Entering the segment again while an instance lives starts nothing
    assert templates(gus.run(START + HOUR, entered="declining")) == []
    gus.did("report_exported", START + DAY)  # converts
    gus.run(START + DAY)
    # re_entry: after 30d: not before 30 days after it ended, then a new run
    assert templates(gus.run(START + 10 * DAY, entered="declining")) == []
    run = gus.run(START + 32 * DAY, entered="declining", segment="declining")
    assert templates(run) == ["declining_nudge"]
    assert sorted(i.run for i in gus.instances.values()) == [1]  # one key: the newer run replaced it


def test_holdout_entrants_are_sent_nothing_and_followed_through_the_goal_window(rules: RuleSet) -> None:
    held = next(u for u in (f"h{i}" for i in range(500)) if in_group("journey:declining_rescue", u, 10))
    hal = Person(rules, "declining_rescue", held)
    hal.did("project_created", START - 20 * DAY)
    run = hal.run(START, entered="declining")
    assert templates(run) == []
    assert hal.only.variant == HOLDOUT
    assert run.wake_at == START + 21 * DAY
    hal.did("login", START + DAY)
    hal.did("report_exported", START + 2 * DAY)
    hal.run(START + 2 * DAY)
    assert hal.only.reason == "converted"  # counted for lift, though sent nothing


# ------------------------------------------------------------------------------ keys, splits, waits


def test_an_event_entry_key_runs_one_instance_per_value(rules: RuleSet) -> None:
    ivy = Person(rules, "split_test")
    ivy.did("premium_feature_attempted", START, feature="sso")
    ivy.run(START)
    ivy.did("premium_feature_attempted", START + HOUR, feature="audit_log")
    ivy.run(START + HOUR)
    assert sorted(ivy.instances) == [
        instance_key("split_test", "audit_log"),
        instance_key("split_test", "sso"),
    ]
    # The same value again while its instance lives: still one per value
    ivy.did("premium_feature_attempted", START + 2 * HOUR, feature="sso")
    ivy.run(START + 2 * HOUR)
    assert len(ivy.instances) == 2


def test_an_old_event_does_not_enter_a_journey_shipped_after_it(rules: RuleSet) -> None:
    jon = Person(rules, "split_test")
    jon.did("premium_feature_attempted", START, feature="sso")
    assert jon.run(START + 3 * DAY).instances == {}


def test_splits_and_variants_are_sticky_per_user_and_near_their_weights(rules: RuleSet) -> None:
    journey = rules.journey_by_id["split_test"]
    paths = Counter(assigned(f"u{i}", "split_test:pick", [50, 50]) for i in range(4000))
    assert 1850 < paths[0] < 2150  # 50% of 4,000, within 5 standard deviations
    variants = Counter(assigned(f"u{i}", "split_test:by_email", [70, 30]) for i in range(4000))
    assert 2700 < variants[0] < 2900
    assert all(
        assigned("same", "split_test:pick", [50, 50]) == assigned("same", "split_test:pick", [50, 50])
        for _ in range(3)
    )
    assert journey.steps["pick"].kind == "split"


def test_wait_until_a_local_time_of_day_is_in_the_users_timezone(rules: RuleSet) -> None:
    # Find a user the split sends by email (then the 18:30 wait)
    user = next(u for u in (f"k{i}" for i in range(100)) if assigned(u, "split_test:pick", [50, 50]) == 0)
    kim = Person(rules, "split_test", user, tz="America/New_York")
    kim.did("premium_feature_attempted", START, feature="sso")
    run = kim.run(START)  # 09:00 UTC = 04:00 in New York
    assert kim.only.step == "evening"
    assert run.wake_at == datetime(2026, 11, 2, 23, 30, tzinfo=UTC)  # 18:30 EST
    later = kim.run(datetime(2026, 11, 2, 23, 30, tzinfo=UTC))
    assert list(later.updates.values()) == [("plan", "team")]
    assert kim.only.reason == "completed"


def test_an_instance_whose_journey_or_step_is_gone_ends_with_the_reason(rules: RuleSet) -> None:
    journey = rules.journey_by_id["declining_rescue"]
    now = START
    gone = JourneyInstance(journey="removed_journey", step="x", step_since=now, entered_at=now)
    moved = JourneyInstance(journey=journey.id, step="old_step", step_since=now, entered_at=now)
    user = UserState(user_id="lee")
    ctx = Context(user, now + DAY)
    facts = evaluate(rules, user, None, None, now + DAY).facts
    run = run_journeys(rules.journeys, {"removed_journey": gone, journey.id: moved}, ctx, facts)
    assert run.instances["removed_journey"].reason == "journey_removed"
    assert run.instances[journey.id].reason == "step_removed"
    assert run.decisions == []


EVERY_TIME = """
id: every_time_test
kind: upgrade
entry: {when: {trait: {name: plan, equals: free}}}
re_entry: every_time
steps:
  - id: offer
    send: {channel: email, template: come_back}
"""


def test_a_condition_entry_enters_again_only_after_the_condition_was_false(tmp_path: Path) -> None:
    rules = rules_with(tmp_path, every_time=EVERY_TIME)
    max_ = Person(rules, "every_time_test")
    max_.identify(START, plan="free")
    assert templates(max_.run(START)) == ["come_back"]  # entered, sent, ended
    # Still free: the same entry, not a new one, however often evaluated
    assert templates(max_.run(START + DAY)) == []
    assert templates(max_.run(START + 2 * DAY)) == []
    # Off the free plan, then back on it: a new entry
    max_.identify(START + 3 * DAY, plan="team")
    assert templates(max_.run(START + 3 * DAY)) == []
    max_.identify(START + 4 * DAY, plan="free")
    assert templates(max_.run(START + 4 * DAY)) == ["come_back"]
    assert sorted(i.run for i in max_.instances.values()) == [1]
