"""Judging one user at one instant against the rules, from the messages they sent: the rule-test
use case (`nudge rules test`) and the judged user `nudge rules explain` shows.

A journey case (`expect: {journey: ...}`) runs over time instead: each event is ingested when it
happened, and the user is evaluated then and at every timer (a wait, a wait_until's timeout, a
re-check of segments), as the stream and the sweep would, with the real evaluator and journey
engine; the case checks the steps reached, the messages decided and how the journey ended.
Guardrails (caps, cooldowns, the control group) are not part of a case, nor is the journey's
holdout: a case follows a user who gets the journey.

The messages go through the real ingest use case into the given store (`replay`), then the
pure `evaluate` judges the user with their account's traits and rollup, read as the evaluate
service reads them (`AccountFactsCache`). A case passes when the judgement meets its `Expect`;
`judge_case` says, in the marketer's words, each way it does not.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from nudge.conditions import facts
from nudge.conditions import features as F
from nudge.conditions import tree as C
from nudge.conditions.features import AccountFacts
from nudge.domain.evaluate import Evaluation, evaluate
from nudge.domain.verdicts import channel_for
from nudge.model.decisions import Decision, SegmentState
from nudge.model.journeys import JourneyInstance
from nudge.model.limits import JOURNEY_TEST_EVALUATIONS
from nudge.model.messages import Identify, Message
from nudge.model.state import UserState
from nudge.ports import UsageStore
from nudge.rulebook.cases import CASE_USER, LoadedCase
from nudge.rulebook.ruleset import RuleSet
from nudge.services.account_facts import AccountFactsCache
from nudge.services.ingest import IngestLimits, ingest


@dataclass(frozen=True)
class Judged:
    """One user judged at one instant: the state, the account and what the rules made of them."""

    user: UserState
    account: AccountFacts | None
    evaluation: Evaluation
    now: datetime

    @property
    def context(self) -> C.Context:
        e = self.evaluation
        return C.Context(
            user=self.user,
            now=self.now,
            account=self.account,
            segment=e.segment or "",
            score=e.score,
            band=e.band,
            account_score=e.account_score,
            account_band=e.account_band,
        )


def replay(store: UsageStore, messages: Sequence[Message], rules: RuleSet, now: datetime) -> list[str]:
    """Ingest messages received at `now` exactly as the ingest Lambda would; return the refusals."""
    result = ingest(list(enumerate(messages)), rules.plan, store, now, IngestLimits(), sleep=lambda _s: None)
    return [f"message {p.index}: {p.message}" for p in result.errors]


def judge_state(rules: RuleSet, store: UsageStore, user: UserState, now: datetime) -> Judged:
    """`user` judged at `now`, with their account as the store holds it (no segment history)."""
    account = AccountFactsCache(store).get(user.account_id)
    return Judged(user, account, evaluate(rules, user, account, None, now), now)


def judge_user(rules: RuleSet, store: UsageStore, user_id: str, now: datetime) -> Judged | None:
    """The stored user judged at `now`; None when the store holds no state for them."""
    stored = store.load_users([user_id]).get(user_id)
    return None if stored is None else judge_state(rules, store, stored.value, now)


def judge_case(rules: RuleSet, case: LoadedCase, store: UsageStore) -> tuple[list[str], Judged | None]:
    """Replay the case into `store` (empty) and judge its user: the ways the case's expectation
    failed (none: it passed), and the judged user (None when Nudge refused the case's events)."""
    if case.expect.journey is not None:
        return judge_journey_case(rules, case, store), None
    refused = replay(store, case.messages, rules, case.at)
    if refused:
        return [f"Nudge refused the case's events: {'; '.join(refused)}"], None
    stored = store.load_users([CASE_USER]).get(CASE_USER)
    judged = judge_state(rules, store, stored.value if stored else UserState(user_id=CASE_USER), case.at)
    e, expect = judged.evaluation, case.expect
    failures: list[str] = []
    if expect.segment is not None and e.segment != expect.segment:
        failures.append(f"segment: expected {expect.segment}, got {e.segment}")
    fired = set(e.fired)
    failures += [f"fires: expected {r} to fire; it did not" for r in expect.fires if r not in fired]
    failures += [f"not_fires: expected {r} not to fire; it fired" for r in expect.not_fires if r in fired]
    escalated = {d.rule for d in e.decisions if d.action == "escalate"}
    failures += [
        f"escalates: expected {r} to escalate; it did not" for r in expect.escalates if r not in escalated
    ]
    for key, want, got in (
        ("band", expect.band, e.band),
        ("account_band", expect.account_band, e.account_band or None),
        ("score", expect.score, e.score),
        ("account_score", expect.account_score, e.account_score),
    ):
        if want is not None and want != got:
            shown = show_value(got) if got is not None else "no account"
            failures.append(f"{key}: expected {show_value(want)}, got {shown}")
    if failures:
        failures.append(f"(fired: {', '.join(e.fired) or 'nothing'}; score {e.score:g} {e.band})")
    return failures, judged


def show_value(value: object) -> str:
    """A fact's value in the marketer's words: `never`, `missing`, `none`, numbers without noise."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        if value >= F.NEVER:
            return "never"
        if value <= facts.MISSING_NUMBER:
            return "missing"
        return f"{value:.1f}".rstrip("0").rstrip(".") if isinstance(value, float) else str(value)
    if value == "":
        return "none"
    return str(value)


@dataclass(frozen=True)
class JourneyTrace:
    """What one journey did to the case's user, from the first event to the case's time."""

    path: list[str]  # steps reached, in order (the one it waits or ended at included)
    sends: list[tuple[str, str, str]]  # (step, template, channel) of each message decided
    ended: str | None  # how the last instance ended; None while it runs


def run_journey_case(rules: RuleSet, case: LoadedCase, store: UsageStore) -> tuple[JourneyTrace, list[str]]:
    """Replay the case over time into `store` (empty): each message ingested when it happened, the
    user evaluated then and at every timer until the case's time. The journey's trace, and the
    problems that stopped the run (refused events, the evaluation bound)."""
    journey_id = case.expect.journey or ""
    # The case follows a user who gets the journey: no holdout (see the module's docstring).
    journeys = [
        dataclasses.replace(j, spec=j.spec.model_copy(update={"holdout": 0.0})) for j in rules.journeys
    ]
    pending = sorted(case.messages, key=lambda m: m.timestamp or case.at)
    segments: SegmentState | None = None
    instances: dict[str, JourneyInstance] = {}
    waiting: dict[str, str] = {}
    visited: list[str] = []
    decisions: list[tuple[Decision, str]] = []
    now = (pending[0].timestamp or case.at) if pending else case.at
    for _ in range(JOURNEY_TEST_EVALUATIONS):
        arrived = [m for m in pending if (m.timestamp or case.at) <= now]
        pending = pending[len(arrived) :]
        refused = replay(store, arrived, rules, now) if arrived else []
        if refused:
            return JourneyTrace([], [], None), [f"Nudge refused the case's events: {'; '.join(refused)}"]
        stored = store.load_users([CASE_USER]).get(CASE_USER)
        user = stored.value if stored else UserState(user_id=CASE_USER)
        account = AccountFactsCache(store).get(user.account_id)
        # Segment history: entries seen. The engine runs the journeys alone (no trigger beside them).
        evaluation = evaluate(rules, user, account, segments, now, instances, programs=journeys)
        segments = evaluation.segments
        run = evaluation.journeys
        instances = run.instances
        # An `update` step's trait, through ingest as the evaluate service sets it.
        updates: list[Message] = [
            Identify(userId=CASE_USER, traits={trait: value}, timestamp=now, messageId=f"journey-{mid}")
            for mid, (trait, value) in run.updates.items()
        ]
        replay(store, updates, rules, now)
        # Where each live instance waits: a goal or an exit ends one before it moves, at that step.
        waiting.update(
            {k: i.step for k, i in instances.items() if i.journey == journey_id and i.live and i.step}
        )
        visited += [v for v in run.visited if v.startswith(f"{journey_id}:")]
        traits = {k: s.v for k, s in user.traits.items()}
        decisions += [(d, _channel(rules, d, traits, now)) for d in run.decisions if d.journey == journey_id]
        later = [
            t
            for t in (
                pending[0].timestamp if pending else None,
                run.wake_at,
                evaluation.next_check_at,
                case.at,
            )
            if t is not None and now < t <= case.at
        ]
        if not later:
            break
        now = min(later)
    else:
        return JourneyTrace([], [], None), [
            f"the case needs more than {JOURNEY_TEST_EVALUATIONS} evaluations; shorten its span"
        ]
    mine = sorted(
        ((k, i) for k, i in instances.items() if i.journey == journey_id), key=lambda ki: ki[1].entered_at
    )
    path = [v.rsplit(":", 1)[1] for v in visited]
    key, last = mine[-1] if mine else ("", None)
    steps = next((j.steps for j in journeys if j.id == journey_id), {})
    # The step it waits at, or was at when its goal or an exit ended it (a completed one has none).
    current: str | None = None
    if last is not None:
        current = (
            last.step if last.live else waiting.get(key) if last.reason in ("converted", "exited") else None
        )
    if current is not None and current in steps:
        path.append(current)
    sends = [(d.step or "", d.template, channel) for d, channel in decisions]
    return JourneyTrace(path, sends, last.reason if last is not None else None), []


def _channel(rules: RuleSet, decision: Decision, traits: dict[str, object], now: datetime) -> str:
    """The channel a journey message takes: of a list, the first the user can receive (address,
    consent, quiet hours), as dispatch chooses; an escalation goes to customer success."""
    if not decision.channels:
        return decision.action
    spec = rules.spec_by_rule.get(decision.rule)
    if spec is None:
        return decision.action
    choice = channel_for(
        spec.model_copy(update={"channel": list(decision.channels)}), traits, rules.guardrails, now
    )
    return choice.channel if choice is not None else decision.action


def judge_journey_case(rules: RuleSet, case: LoadedCase, store: UsageStore) -> list[str]:
    """The ways a journey case's expectation failed (none: it passed)."""
    trace, problems = run_journey_case(rules, case, store)
    if problems:
        return problems
    expect = case.expect
    failures: list[str] = []
    if expect.path is not None and trace.path != expect.path:
        failures.append(
            f"path: expected {' > '.join(expect.path) or 'none'}, got {' > '.join(trace.path) or 'none'}"
        )
    if expect.sends is not None:
        got = [(step, template, channel) for step, template, channel in trace.sends]
        want_n, got_n = len(expect.sends), len(got)
        if want_n != got_n:
            failures.append(f"sends: expected {want_n} message(s), got {got_n}")
        for i, (want, (step, template, channel)) in enumerate(zip(expect.sends, got, strict=False)):
            if (
                want.template != template
                or (want.channel or channel) != channel
                or (want.step or step) != step
            ):
                by = f" by {want.channel}" if want.channel else ""
                at = f" at {want.step}" if want.step else ""
                failures.append(
                    f"sends[{i}]: expected {want.template}{by}{at}, got {template} by {channel} at {step}"
                )
    if expect.ended is not None and trace.ended != expect.ended:
        failures.append(f"ended: expected {expect.ended}, got {trace.ended or 'still running'}")
    if failures:
        shown = ", ".join(f"{t} by {c} at {s}" for s, t, c in trace.sends) or "nothing"
        failures.append(f"(path: {' > '.join(trace.path) or 'none'}; sent: {shown})")
    return failures
