"""evaluate()'s fast paths give exactly what the plain definitions give: each fact against its
feature in nudge.conditions.features, the re-check time against the earliest change of every test,
and the durable_rules adapter across many users in one session."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nudge.adapters.memory import MemoryUsageStore
from nudge.conditions import facts as CF
from nudge.conditions import features as F
from nudge.conditions import tree as C
from nudge.conditions.features import AccountFacts
from nudge.conditions.tree import Context, NamedCondition, holds_in
from nudge.domain.engine import CompiledGroup, UnreadableFact, encode_fact
from nudge.domain.evaluate import evaluate, facts_for, next_check, rules_checks, window_end
from nudge.model.decisions import Value
from nudge.model.messages import Batch, InvalidMessage, Message
from nudge.model.state import UserState
from nudge.rulebook.loader import load_rules
from nudge.rulebook.ruleset import RuleSet
from nudge.services.ingest import IngestLimits, ingest
from nudge.tools.samples.generator import generate

RULES: RuleSet = load_rules(Path("rules"))
START = datetime(2025, 1, 6, tzinfo=UTC)
END = START + timedelta(days=70)
# Instants around the end of the history: midnight, mid-week, before it, and well after it.
INSTANTS = [
    END,
    END + timedelta(days=1, hours=5, minutes=17, seconds=3, microseconds=123),
    END + timedelta(days=9, hours=13),
    END - timedelta(days=2, microseconds=-500),
    END + timedelta(days=45),
]

Population = list[tuple[UserState, AccountFacts | None]]


@pytest.fixture(scope="module")
def population() -> Population:
    """A small sample history (nudge.tools.samples.generator) folded by the ingest service."""
    raw = list(generate(users=80, accounts=10, days=70, seed=11, start=START))
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


Reference = Callable[[UserState, AccountFacts | None, datetime], Value]


# The plain definitions, from nudge.conditions.features.
def _days_without(event: str, u: UserState, a: AccountFacts | None, now: datetime) -> Value:
    return round(F.days_without(u, event, now), 4)


def _days_since(event: str, u: UserState, a: AccountFacts | None, now: datetime) -> Value:
    return round(F.days_since_event(u, event, now), 4)


def _milestone(milestone: str, u: UserState, a: AccountFacts | None, now: datetime) -> Value:
    return round(F.days_since_milestone(u, milestone, now), 4)


def _age(u: UserState, a: AccountFacts | None, now: datetime) -> Value:
    return round(F.age_days(u, now), 4)


def _count(event: str, days: int, u: UserState, a: AccountFacts | None, now: datetime) -> Value:
    return F.count_within(u, event, days, now)


def _active_days(days: int, u: UserState, a: AccountFacts | None, now: datetime) -> Value:
    return F.active_days_within(u, days, now)


def _feature(feature: str, u: UserState, a: AccountFacts | None, now: datetime) -> Value:
    return F.feature_status(u, feature, now)


def _weeks_below(
    metric: F.Metric, threshold: int, u: UserState, a: AccountFacts | None, now: datetime
) -> Value:
    return F.weeks_below(u, metric, threshold, now)


def _trend(metric: F.Metric, u: UserState, a: AccountFacts | None, now: datetime) -> Value:
    return F.trend_percent(u, metric, now)


def _frequency(u: UserState, a: AccountFacts | None, now: datetime) -> Value:
    return F.frequency_band(u, now)


def _did(
    did: str, not_: str, within: timedelta, u: UserState, a: AccountFacts | None, now: datetime
) -> Value:
    return 1 if F.did_but_not_within(u, did, not_, within, now) else 0


def _active_users(u: UserState, a: AccountFacts | None, now: datetime) -> Value:
    return a.active_users(F.complete_weeks(now, 1)[0]) if a else 0


def _active_users_trend(u: UserState, a: AccountFacts | None, now: datetime) -> Value:
    return a.active_users_trend(now) if a else 0


def _references() -> list[tuple[C.Fact, Reference]]:
    """Facts of every kind, each with its plain definition."""
    pairs: list[tuple[C.Fact, Reference]] = []
    for event in ("any", "signed_up", "project_created", "report_exported"):
        pairs.append((CF.days_without_fact(event), partial(_days_without, event)))
        pairs.append((CF.days_since_fact(event), partial(_days_since, event)))
    for milestone in ("activated", "setup_done", "first_project"):
        pairs.append((CF.milestone_days_fact(milestone), partial(_milestone, milestone)))
    pairs.append((CF.age_fact(), _age))
    for event, days in (("premium_feature_attempted", 28), ("premium_feature_attempted", 14), ("login", 7)):
        pairs.append((CF.count_fact(event, days), partial(_count, event, days)))
    for days in (7, 28):
        pairs.append((CF.active_days_fact(days), partial(_active_days, days)))
    for feature in ("automation", "reporting", "integrations", "premium"):
        pairs.append((CF.feature_fact(feature), partial(_feature, feature)))
    weekly: list[tuple[F.Metric, int]] = [("sessions", 2), ("sessions", 5), ("active_days", 1)]
    for metric, threshold in weekly:
        pairs.append((CF.weeks_below_fact(metric, threshold), partial(_weeks_below, metric, threshold)))
    metrics: list[F.Metric] = ["sessions", "active_days"]
    for metric in metrics:
        pairs.append((CF.trend_fact(metric), partial(_trend, metric)))
    pairs.append((CF.frequency_fact(), _frequency))
    for did, not_, within in (
        ("signed_up", "setup_completed", timedelta(days=1)),
        ("setup_completed", "project_created", timedelta(days=1)),
        ("project_created", "teammate_invited", timedelta(days=2)),
    ):
        pairs.append((CF.did_not_fact(did, not_, within), partial(_did, did, not_, within)))
    pairs.append((CF.account_metric_fact("active_users"), _active_users))
    pairs.append((CF.account_metric_fact("active_users_trend"), _active_users_trend))
    return pairs


REFERENCES = _references()


def _same(actual: object, expected: object) -> bool:
    """Equal, and of the same type (0 is not 0.0 to durable_rules' JSON)."""
    return actual == expected and type(actual) is type(expected)


@pytest.mark.parametrize("now", INSTANTS)
def test_every_fact_is_its_plain_feature_alone_or_sharing_a_context(
    population: Population, now: datetime
) -> None:
    for user, account in population:
        shared = Context(user=user, now=now, account=account)
        for fact, reference in REFERENCES:
            expected = reference(user, account, now)
            alone = fact.compute(Context(user=user, now=now, account=account))
            assert _same(alone, expected), (fact.key, user.user_id, alone, expected)
            together = fact.compute(shared)
            assert _same(together, expected), (fact.key, user.user_id, together, expected)


def test_anchored_facts_change_at_their_plain_instant(population: Population) -> None:
    """days since X crosses N at X + N days (one second later for gt and lte)."""
    day, second = timedelta(days=1), timedelta(seconds=1)
    for user, account in population:
        ctx = Context(user=user, now=END, account=account)
        last = user.last_meaningful
        assert CF.days_since_fact("any").changes_at(ctx, "lte", 7.0) == (
            last + 7 * day + second if last else None
        )
        assert CF.days_since_fact("any").changes_at(ctx, "gte", 7) == (last + 7 * day if last else None)
        signup = F.signed_up_at(user)
        assert CF.age_fact().changes_at(ctx, "lte", 14.0) == (signup + 14 * day + second if signup else None)
        start = last or signup
        assert CF.days_without_fact("any").changes_at(ctx, "gte", 30.0) == (
            start + 30 * day if start else None
        )
        assert CF.milestone_days_fact("activated").changes_at(ctx, "lt", F.NEVER) is None
        first = user.events.get("signed_up")
        did = CF.did_not_fact("signed_up", "setup_completed", day)
        assert did.changes_at(ctx, "eq", 1) == (first.first + day if first else None)


def _naive_next_check(rules: RuleSet, ctx: Context, fired: list[str]) -> datetime | None:
    """The earliest future change of every test, or end of a fired trigger's cooldown: all asked."""
    times = [at for check in rules_checks(rules) if (at := check.fact.changes_at(ctx, check.op, check.value))]
    future = [at for at in times if at > ctx.now]
    future += [end for rule in fired if (end := window_end(rules.trigger_by_id[rule], ctx.now)) is not None]
    return min(future) if future else None


@pytest.mark.parametrize("now", INSTANTS)
def test_next_check_is_the_earliest_change_of_every_test(population: Population, now: datetime) -> None:
    for user, account in population:
        evaluation = evaluate(RULES, user, account, None, now)
        ctx = Context(
            user=user,
            now=now,
            account=account,
            segment=evaluation.segment or "",
            score=evaluation.score,
            band=evaluation.band,
            account_score=evaluation.account_score,
            account_band=evaluation.account_band,
        )
        expected = _naive_next_check(RULES, ctx, evaluation.fired)
        # The very object min() would pick: equal instants may differ in tzinfo.
        assert repr(evaluation.next_check_at) == repr(expected), user.user_id
        assert repr(next_check(RULES, ctx, evaluation.fired)) == repr(expected)


@pytest.mark.parametrize("now", INSTANTS)
def test_evaluate_decides_what_the_conditions_say_on_its_facts(population: Population, now: datetime) -> None:
    """Many users through the same durable_rules sessions: each sees only its own fact."""
    for user, account in population:
        evaluation = evaluate(RULES, user, account, None, now)
        facts = evaluation.facts
        before = facts_for(RULES, Context(user=user, now=now, account=account))
        known_later = CF.SCORE_FACT_KEYS | {"segment"}  # set by evaluate after the first pass
        assert {k: v for k, v in before.items() if k not in known_later}.items() <= facts.items()
        segment = next(
            (s.id for s in RULES.segments if s.condition is None or holds_in(s.condition, facts)), None
        )
        assert evaluation.segment == segment
        assert evaluation.fired == [t.id for t in RULES.triggers if holds_in(t.condition, facts)]
        escalated = {d.rule for d in evaluation.decisions if d.action == "escalate"}
        for trigger in RULES.triggers:
            if trigger.escalate_when is not None and trigger.id in evaluation.fired:
                assert (trigger.id in escalated) == holds_in(trigger.escalate_when, facts)


def test_a_context_shares_its_memo_only_with_its_scored_self() -> None:
    user = UserState(user_id="u")
    ctx = Context(user=user, now=END)
    ctx.memo["x"] = 1
    scored = ctx.scored("dormant", 10.0, "low", 0.0, "")
    assert scored.memo is ctx.memo
    assert scored.segment == "dormant"
    assert scored.instant is ctx.instant
    other = replace(ctx, now=END + timedelta(days=1))
    assert other.memo == {}
    assert other.instant.today == ctx.instant.today + 1
    assert ctx == Context(user=user, now=END)  # the memo is not part of a context's value


def test_the_clock_of_an_instant_is_its_weeks_and_day() -> None:
    for now in INSTANTS:
        instant = F.instant_at(now)
        assert instant is F.instant_at(now)
        assert list(instant.weeks) == F.complete_weeks(now, F.WEEKS_KEPT)
        assert instant.today == now.date().toordinal()
        assert instant.next_week == F.next_week_start(now)
        assert instant.since == now - F.EPOCH


def test_window_exit_at_is_window_exit() -> None:
    for now in INSTANTS:
        instant = F.instant_at(now)
        today = instant.today
        for days in (
            [],
            [today],
            [today - 3, today - 10, today - 27, today - 40],
            list(range(today - 30, today + 1)),
        ):
            for window, keep in ((7, None), (28, None), (28, 3), (14, 2)):
                assert F.window_exit_at(days, window, instant, keep) == F.window_exit(days, window, now, keep)


# -- the durable_rules adapter --------------------------------------------------------------------


def test_facts_are_encoded_as_json_would_and_numbers_durable_rules_cannot_read_are_named() -> None:
    fact: dict[str, object] = {"a": 1.5, "b": 0, "c": "plan \u00e9", "d": -(10**9), "sid": "3"}
    assert json.loads(encode_fact(fact)) == fact
    # Floats with an exponent get a decimal point (durable_rules refuses 1e+19), and still read back
    exponents: dict[str, object] = {"big": 1e19, "small": 1e-07, "tiniest": 5e-324, "text": "1e5"}
    assert encode_fact(exponents) == '{"big":1.0e+19,"small":1.0e-07,"tiniest":5.0e-324,"text":"1e5"}'
    assert json.loads(encode_fact(exponents)) == exponents
    for value in (float("inf"), float("nan"), 2**70):
        with pytest.raises(UnreadableFact) as refused:
            encode_fact({"ok": 1, "x": value})
        assert refused.value.key == "x"


def test_a_refused_fact_leaves_the_ruleset_usable() -> None:
    fact = C.Fact("n", "n", lambda ctx: 0)
    rules = CompiledGroup("refused", [NamedCondition("big", C.Check(fact, "gte", 5))])
    assert rules.matches({"n": 7}) == ["big"]
    with pytest.raises(UnreadableFact):
        rules.matches({"n": float("inf")})  # Infinity is not JSON to durable_rules
    assert rules.matches({"n": 7}) == ["big"]
    assert rules.matches({"n": 1}) == []


_FLOATS = st.floats(allow_nan=False, allow_infinity=False)


@settings(max_examples=200, deadline=None)
@given(_FLOATS, st.sampled_from([2000, 1e16, 1e-05, -1e19, 0.5, 1e300]))
def test_durable_rules_compares_floats_of_any_magnitude_as_python_does(
    value: float, threshold: float
) -> None:
    # Once, a float written with an exponent and no decimal point (1e+19, 1e-07: an account's mrr,
    # a tiny property) made durable_rules refuse the fact and fail the evaluation; and a rule's
    # threshold written so (at_most: 0.00001) failed its compilation.
    fact = C.Fact("x", "x", lambda ctx: 0)
    rules = CompiledGroup(
        "floats",
        [
            NamedCondition("at_least", C.Check(fact, "gte", threshold)),
            NamedCondition("below", C.Check(fact, "lt", threshold)),
        ],
    )
    assert rules.matches({"x": value}) == (["at_least"] if value >= threshold else ["below"])


def test_an_out_of_range_account_trait_is_answered_as_missing_and_reported(population: Population) -> None:
    # The case: an account's mrr of 1e19 or seats of 1e20, stored, failed the evaluation of
    # every user of the account for good. Now the facts that read them answer as if they were
    # missing; the rest of the evaluation is what it would be without them.
    user, account = next((u, a) for u, a in population if a is not None and "mrr" in a.traits)
    bad = AccountFacts({**account.traits, "mrr": 1e19, "seats": 10**20}, account.rollup)
    without = AccountFacts(
        {k: v for k, v in account.traits.items() if k not in ("mrr", "seats")}, account.rollup
    )

    got = evaluate(RULES, user, bad, None, END)
    want = evaluate(RULES, user, without, None, END)

    assert got.ignored == ("account_trait_number__mrr", "account_trait_number__seats")
    assert want.ignored == ()
    assert (got.segment, got.score, got.account_score, got.fired) == (
        want.segment,
        want.score,
        want.account_score,
        want.fired,
    )
    assert [d.decision_id for d in got.decisions] == [d.decision_id for d in want.decisions]


def test_a_value_that_slips_past_the_facts_bounds_is_answered_as_missing_too(
    population: Population, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Whatever a fact computes that durable_rules cannot read (here an infinite mrr, as if the
    # facts' own bound had let it through), the evaluation goes on with that fact missing.
    monkeypatch.setattr(CF, "trait_number_in_range", lambda value: True)
    user, account = next((u, a) for u, a in population if a is not None and "mrr" in a.traits)
    bad = AccountFacts({**account.traits, "mrr": float("inf")}, account.rollup)
    without = AccountFacts({k: v for k, v in account.traits.items() if k != "mrr"}, account.rollup)

    got = evaluate(RULES, user, bad, None, END)

    assert got.ignored == ("account_trait_number__mrr",)
    assert got.facts["account_trait_number__mrr"] == CF.MISSING_NUMBER
    assert got.account_score == evaluate(RULES, user, without, None, END).account_score


def test_the_entries_pass_names_each_program_by_its_id_triggers_first() -> None:
    names = [rule.name for rule in RULES.entry_rules.rules]
    assert names == [p.id for p in RULES.programs if p.entry is not None]
    assert names[: len(RULES.triggers)] == [t.id for t in RULES.triggers]


def test_weeks_below_counts_the_week_a_user_signed_up_at_its_very_start() -> None:
    """Signed up exactly at a week's start (as parsed by pydantic), or a microsecond either side."""
    now = datetime(2025, 3, 19, 15, 0, tzinfo=UTC)  # a Wednesday
    monday = "2025-03-03T00:00:00"
    for signup in (f"{monday}Z", f"{monday}.000001Z", "2025-03-02T23:59:59.999999Z", f"{monday}+00:00"):
        user = UserState.model_validate(
            {
                "user_id": "u",
                "events": {"signed_up": {"count": 1, "first": signup, "last": signup}},
                "weeks": {"2025-W10": {"sessions": 1}, "2025-W11": {"sessions": 0}},
            }
        )
        for threshold in (2, 1):
            fact = CF.weeks_below_fact("sessions", threshold)
            expected = F.weeks_below(user, "sessions", threshold, now)
            assert fact.compute(Context(user=user, now=now)) == expected, (signup, threshold)
