"""Judging one user at one instant against the rules, from the messages they sent: the rule-test
use case (`nudge rules test`) and the judged user `nudge rules explain` shows.

The messages go through the real ingest use case into the given store (`replay`), then the
pure `evaluate` judges the user with their account's traits and rollup, read as the evaluate
service reads them (`AccountFactsCache`). A case passes when the judgement meets its `Expect`;
`judge_case` says, in the marketer's words, each way it does not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from nudge.conditions import facts
from nudge.conditions import features as F
from nudge.conditions import tree as C
from nudge.conditions.features import AccountFacts
from nudge.domain.evaluate import Evaluation, evaluate
from nudge.model.messages import Message
from nudge.model.state import UserState
from nudge.ports import UsageStore
from nudge.rulebook.cases import CASE_USER, LoadedCase
from nudge.rulebook.ruleset import RuleSet
from nudge.services.evaluate import AccountFactsCache
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
