"""The evaluate use case, shared by the stream evaluator, the sweep, and the local stack.

`evaluate_user` wires ports around the pure `nudge.domain.evaluate.evaluate`:

    account facts (traits + rollup, cached per batch) -> previous SegmentRecord -> evaluate (the
    one engine: triggers as one-step journeys, and the user's journey instances)
    -> publish the decisions not published yet -> versioned save of the new record + next check
    -> the journeys' trait updates

Order and retries, and why:
- Decisions are published BEFORE the record that remembers them is saved. A crash between the two
  republishes on redelivery, with the same decision ids (deterministic per rule, subject and
  cooldown window), which the consumer dedupes; the other order could lose a decision.
- The save is conditional on the record's version. The sweep and the stream evaluator may
  evaluate one user at once: the loser re-reads and re-evaluates, so a transition is recorded
  (and counted) once, by the writer that won.
- A record that would not change is not written: most usage changes move no segment and fire
  nothing new, and a write would cost a WCU and a stream record for nothing.
- A journey's `update` step sets its trait after the save that moved the instance won (only the
  winner's path sets anything), by an identify whose message id is the step's (set once). The
  same save keeps it pending in the record (and due for the sweep); a later save clears it once
  set. Every evaluation first sets what a record still has pending, so a failed set (store
  unavailable, contention) is finished by the stream's retry or the sweep, never lost.
- A stream record older than the state the record was last written from (the sweep already read
  a newer one) is skipped: it must not move the user back to a segment they already left.

`evaluate_account` re-evaluates the users of an account whose trait values changed (a stream
record of its TRAITS item), found through the sparse `by_account` index, up to a fan-out limit.

The sweep (services/sweep.py) evaluates the users whose re-check is due with `evaluate_user`.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime

from nudge.backoff import CONTENTION
from nudge.domain.evaluate import evaluate
from nudge.domain.journeys import blocked_end
from nudge.model.decisions import Decision, Value
from nudge.model.errors import StateConflict
from nudge.model.journeys import JourneyInstance
from nudge.model.messages import Identify, Message
from nudge.model.outcomes import SweepResult, UserOutcome
from nudge.model.queue import DecisionBatch
from nudge.model.segments import DeferredSend, SegmentRecord, due_time, kept_check
from nudge.model.state import UserState
from nudge.model.versioned import Versioned
from nudge.observability import logger
from nudge.ports import DecisionPublisher, EvaluationMetrics, SegmentStore, UsageStore
from nudge.rulebook.ruleset import RuleSet
from nudge.services.account_facts import AccountFactsCache
from nudge.services.ingest import ingest

# ------------------------------------------------------------------------------------ ports


class NoMetrics:
    def outcome(self, outcome: UserOutcome) -> None:
        pass

    def swept(self, result: SweepResult) -> None:
        pass


@dataclass(frozen=True)
class RulesPorts:
    usage: UsageStore
    segments: SegmentStore
    publisher: DecisionPublisher
    metrics: EvaluationMetrics = field(default_factory=NoMetrics)


# ------------------------------------------------------------------------------------ evaluate


class EvaluationContention(StateConflict):
    """The user's record stayed contended through every attempt; retry the whole record later."""


def decision_key(decision: Decision) -> str:
    if decision.step:  # a journey's: one per step
        return f"{decision.rule}:{decision.step}:{decision.action}"
    return f"{decision.rule}:{decision.action}"


def _set_traits(
    user_id: str, updates: dict[str, tuple[str, Value]], rules: RuleSet, ports: RulesPorts, now: datetime
) -> None:
    """A journey's `update` steps, as identify calls through ingest: one implementation of a trait
    change, deduplicated by message id (the same step of the same instance sets it once, whoever
    evaluates it), and a stream record that evaluates the user again with the trait set. Called
    after the save that stored them as pending won, never before: the loser of a race must not set
    its path's trait (its save failed, so nothing of its is pending), and repeating is harmless."""
    messages: list[Message] = [
        Identify(userId=user_id, traits={trait: value}, timestamp=now, messageId=f"journey-{message_id}")
        for message_id, (trait, value) in updates.items()
    ]
    result = ingest(list(enumerate(messages)), rules.plan, ports.usage, now)
    if result.errors:
        logger.warning(
            "journey trait update refused",
            extra={"user_id": user_id, "errors": [e.message for e in result.errors]},
        )


def evaluate_user(
    user: UserState,
    rules: RuleSet,
    ports: RulesPorts,
    now: datetime,
    *,
    state_version: int | None = None,
    previous: Versioned[SegmentRecord] | None = None,
    accounts: AccountFactsCache | None = None,
    attempts: int = 5,
    correlation_id: str = "",
) -> UserOutcome:
    """Evaluate one user's usage state at `now`; record segments and next check; publish decisions.

    state_version: the version of the usage state `user` was read at (stream image or load);
      None skips the staleness check (callers that evaluate what they just read, like a CLI).
    previous: the user's SegmentRecord if already loaded (the sweep batch-loads them); else loaded.
    accounts: share one cache across a batch; a fresh one is used otherwise.
    correlation_id: the request (ingest API request id) or sweep run that led here; put on the
      decisions published, so dispatch and the action functions log under it too.
    """
    if not user.addressable:
        # Nothing is ever sent to an anonymous-only profile, nor to an id merged into a user (its
        # history and its messages are the user's now): no segment record, no decisions.
        return UserOutcome(user.user_id, False, False, None, None, None, (), None)
    accounts = accounts or AccountFactsCache(ports.usage, rules.reads_account_usage)
    account = accounts.get(user.account_id)
    current = previous if previous is not None else ports.segments.load([user.user_id])[user.user_id]
    conflicts = 0
    for _ in CONTENTION.with_attempts(attempts).tries():
        record = current.value
        if record.pending_traits:
            # An earlier evaluation's save won but its trait set failed: finish it first (this
            # evaluation's save then clears it). Raises as that set did: the retry tries again.
            _set_traits(user.user_id, record.pending_traits, rules, ports, now)
        if state_version is not None and state_version < record.state_version:
            outcome = UserOutcome(
                user.user_id,
                False,
                False,
                record.segments.segment,
                None,
                None,
                (),
                record.next_check_at,
                conflicts,
            )
            ports.metrics.outcome(outcome)
            return outcome

        evaluation = evaluate(
            rules, user, account, record.segments if current.version else None, now, record.journeys
        )
        if evaluation.ignored:
            # A trait out of range (kept before the bounds existed): answered as missing, so this
            # user and the account's others are still evaluated. Fact names only: no value, no id.
            logger.warning(
                "facts out of range answered as missing",
                extra={"facts": list(evaluation.ignored), "account_id": user.account_id},
            )
        # The engine's decisions: a trigger's is made at each evaluation its condition holds, under
        # its window's id, and is fresh only when the record has not decided that id (its window
        # re-enters it); a journey's is made once, at the step its instance advances through.
        decided = {
            decision_key(d): d.model_copy(update={"correlation_id": correlation_id}) if correlation_id else d
            for d in evaluation.decisions
            if not d.journey
        }
        journeys = evaluation.journeys
        # A journey's deferred send resumes while its instance is live, or completed (the send was
        # its last step: the instance walked past it while the send waited out quiet hours).
        resumable = {k for k, i in journeys.instances.items() if i.live or i.reason == "completed"}
        # Deferrals that came due: the rule still holds -> the deferred decision goes back to
        # dispatch under its own id (judged again); it does not -> dispatch cancels it. A journey's
        # goes back while its instance is resumable (it was decided at its step, which is behind it
        # now: it resumes, never repeats), and is cancelled once the user converted or left.
        due = {k: v for k, v in record.deferred.items() if v.until <= now}
        returning = [
            decided[k].model_copy(update={"decision_id": v.decision_id})
            for k, v in due.items()
            if k in decided
        ] + [v.decision for v in due.values() if v.decision is not None and v.decision.instance in resumable]
        returning_ids = {d.decision_id for d in returning}
        lapsed = [v.decision_id for v in due.values() if v.decision_id not in returning_ids]
        fresh = (
            [d for k, d in decided.items() if record.decided.get(k) != d.decision_id and k not in due]
            + returning
            + [
                d.model_copy(update={"correlation_id": correlation_id}) if correlation_id else d
                for d in evaluation.decisions
                if d.journey
            ]
        )
        waiting = {k: v for k, v in record.deferred.items() if k not in due}
        checks = [
            c
            for c in (evaluation.next_check_at, journeys.wake_at, *(v.until for v in waiting.values()))
            if c is not None
        ]
        # A re-check still ahead and earlier than this one is kept (model.segments.kept_check).
        next_check_at = kept_check(record.next_check_at, due_time(min(checks)) if checks else None, now)
        updated = SegmentRecord(
            segments=evaluation.segments,
            decided={**record.decided, **{k: d.decision_id for k, d in decided.items()}},
            state_version=max(record.state_version, state_version or 0),
            deferred=waiting,
            journeys=journeys.instances,
            pending_traits=journeys.updates,
            # Due now while a trait is pending: if setting it fails, the sweep finishes it.
            next_check_at=due_time(now) if journeys.updates else next_check_at,
            band=evaluation.band,
            band_since=record.band_since if evaluation.band == record.band else now,
            account_id=user.account_id,
        )
        if fresh or lapsed:
            ports.publisher.publish(
                DecisionBatch(
                    user=user.user_id,
                    account=user.account_id,
                    decided_at=now,
                    decisions=fresh,
                    returning=[d.decision_id for d in returning],
                    lapsed=lapsed,
                )
            )
            logger.info(
                "decisions published",
                extra={
                    "user_id": user.user_id,
                    "decision_ids": [d.decision_id for d in fresh],
                    "rules": [d.rule for d in fresh],
                    "lapsed": lapsed,
                },
            )
        # The state version alone is no reason to write (it moves with every usage change).
        if updated.model_copy(update={"state_version": record.state_version}) == record:
            outcome = UserOutcome(
                user.user_id,
                True,
                False,
                evaluation.segment,
                None,
                None,
                tuple(fresh),
                updated.next_check_at,
                conflicts,
                evaluation.ignored,
            )
            ports.metrics.outcome(outcome)
            return outcome
        try:
            ports.segments.save(user.user_id, updated, current.version, now)
        except StateConflict:
            conflicts += 1
            current = ports.segments.load([user.user_id])[user.user_id]
            continue
        if journeys.updates:
            # Only the evaluation whose save won sets a trait: the loser of a race (another path of
            # the same instance) must not, and its re-read finds the instance already moved on.
            _set_traits(user.user_id, journeys.updates, rules, ports, now)
            updated = updated.model_copy(update={"pending_traits": {}, "next_check_at": next_check_at})
            # A conflict: another evaluation wrote since. It set what was pending (the first thing
            # an evaluation does) and its save cleared it, or the next one will; a repeat is harmless.
            with suppress(StateConflict):
                ports.segments.save(user.user_id, updated, current.version + 1, now)
        outcome = UserOutcome(
            user.user_id,
            True,
            True,
            evaluation.segment,
            evaluation.entered,
            evaluation.exited,
            tuple(fresh),
            updated.next_check_at,
            conflicts,
            evaluation.ignored,
        )
        if evaluation.entered or evaluation.exited:
            logger.info(
                "segment transition",
                extra={"user_id": user.user_id, "entered": evaluation.entered, "exited": evaluation.exited},
            )
        ports.metrics.outcome(outcome)
        return outcome
    raise EvaluationContention(
        f"user {user.user_id}: segment record still contended after {attempts} attempts"
    )


# ------------------------------------------------------------------------------------ stream


class SegmentRechecks:
    """Dispatch's deferrals, kept in the user's segment record: the sweep already wakes the user at
    `next_check_at`, so a deferred send rides on it (no second schedule, no second index)."""

    def __init__(self, segments: SegmentStore, attempts: int = 8) -> None:
        self.segments = segments
        self.attempts = attempts

    def defer(self, user_id: str, decision: Decision, until: datetime, now: datetime) -> None:
        key = decision_key(decision)
        wanted = DeferredSend(
            decision_id=decision.decision_id, until=until, decision=decision if decision.step else None
        )
        for _ in CONTENTION.with_attempts(self.attempts).tries():
            current = self.segments.load([user_id])[user_id]
            record = current.value
            if record.deferred.get(key) == wanted:
                return  # a redelivered batch: already scheduled
            checks = [c for c in (record.next_check_at, until) if c is not None]
            updated = record.model_copy(
                update={"deferred": {**record.deferred, key: wanted}, "next_check_at": due_time(min(checks))}
            )
            try:
                self.segments.save(user_id, updated, current.version, now)
                return
            except StateConflict:
                continue
        raise EvaluationContention(f"user {user_id}: could not schedule a deferred send")

    def end_journey(self, user_id: str, decision: Decision, now: datetime) -> None:
        for _ in CONTENTION.with_attempts(self.attempts).tries():
            current = self.segments.load([user_id])[user_id]
            record = current.value
            instance = record.journeys.get(decision.instance)
            if instance is None or not instance.live:
                return  # gone, or already ended (a redelivered batch)
            journeys = {**record.journeys, decision.instance: blocked_end(instance, now)}
            try:
                self.segments.save(
                    user_id, record.model_copy(update={"journeys": journeys}), current.version, now
                )
                return
            except StateConflict:
                continue
        raise EvaluationContention(f"user {user_id}: could not end a journey instance")

    def saved_journeys(self, user_id: str) -> Mapping[str, JourneyInstance]:
        return self.segments.load([user_id])[user_id].value.journeys


class AccountEvaluationFailed(Exception):
    """Some users of an account whose traits changed could not be evaluated; retry the record."""


@dataclass(frozen=True)
class AccountOutcome:
    account_id: str
    users: int
    # True when the account has more users than the fan-out limit: the rest were not evaluated.
    truncated: bool
    outcomes: tuple[UserOutcome, ...]
    failed: tuple[str, ...]


def evaluate_account(
    account_id: str,
    rules: RuleSet,
    ports: RulesPorts,
    now: datetime,
    *,
    accounts: AccountFactsCache | None = None,
    limit: int = 5000,
    page_size: int = 100,
    attempts: int = 5,
) -> AccountOutcome:
    """Evaluate every user of an account whose traits changed (at most `limit` of them).

    The account's users come from the by_account index, their states from `load_users`, a page at
    a time; all share `accounts`, whose entry for this account is dropped first so every user sees
    the new traits. A user that fails does not stop the others; AccountEvaluationFailed at the end
    reports the record for a retry, which publishes nothing twice (same decision ids, records saved).
    """
    accounts = accounts or AccountFactsCache(ports.usage, rules.reads_account_usage)
    accounts.forget(account_id)
    user_ids = ports.usage.users_of_account(account_id, limit + 1)
    truncated = len(user_ids) > limit
    if truncated:
        user_ids = user_ids[:limit]
        logger.warning(
            "account traits changed: too many users to re-evaluate now; the rest wait for their re-checks",
            extra={"account_id": account_id, "users_more_than": limit, "evaluated": limit},
        )
    outcomes: list[UserOutcome] = []
    failed: list[str] = []
    for start in range(0, len(user_ids), page_size):
        page = user_ids[start : start + page_size]
        users = ports.usage.load_users(page)
        for user_id in page:
            loaded = users.get(user_id)
            # Erased, or moved to another account since the index was read.
            if loaded is None or loaded.value.account_id != account_id:
                continue
            try:
                outcomes.append(
                    evaluate_user(
                        loaded.value,
                        rules,
                        ports,
                        now,
                        state_version=loaded.version,
                        accounts=accounts,
                        attempts=attempts,
                    )
                )
            except Exception:
                failed.append(user_id)
                logger.exception(
                    "account traits changed: a user's evaluation failed",
                    extra={"account_id": account_id, "user_id": user_id},
                )
    result = AccountOutcome(account_id, len(user_ids), truncated, tuple(outcomes), tuple(failed))
    if failed:
        raise AccountEvaluationFailed(
            f"account {account_id}: {len(failed)} of {len(user_ids)} users could not be evaluated"
        )
    return result
