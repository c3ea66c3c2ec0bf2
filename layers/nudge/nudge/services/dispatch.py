"""Dispatch: one evaluation's decisions for one user -> guardrails -> ledger -> channel queues.

    load (user traits; delivery record, ledger entries, account escalation; the suppression list's
    records for the user's email address and phone number)
    -> guard (pure) -> commit (one transaction: entries claimed, caps taken, escalation opened)
    -> route the sends to their channel's queue; schedule the re-check of deferred ones

At most once: a decision id is claimed in the ledger by a conditional write before anything is
routed, so a redelivered batch finds its entries and judges nothing twice. The write is one
transaction with the user's delivery record (version-checked), so two evaluations dispatched at
once for one user cannot both take the last slot of a cap: the loser re-reads and is judged
against the winner's sends. Routing comes after the commit; if it fails, the batch is retried and
entries still `queued` are routed again (the action functions claim `queued -> sending`, so a
second copy on a channel queue sends nothing).

Only the saved path of a journey: two evaluations from one version of a user's record may move an
instance along different paths and both publish before one save wins. A journey's decision is
judged only once the saved instance has moved past its step visit, and sent only if the instance
made it; the loser's are suppressed `superseded`. While the winning save has not landed (it follows
its publish by milliseconds) the record is read again after a backoff, then the batch fails and
its queue delivers it again later (JourneyNotSaved).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from nudge.backoff import CONTENTION
from nudge.domain.journey_sends import EXIT_MARK, SUPERSEDED, PathVerdict, on_saved_path, when_blocked
from nudge.domain.suppression import kind_of
from nudge.domain.verdicts import Verdict, guard, guard_escalation
from nudge.model.decisions import Decision
from nudge.model.errors import StateConflict
from nudge.model.ledger import Commit, Escalation, LedgerEntry, subject_of
from nudge.model.queue import DecisionBatch, Delivery
from nudge.model.state import UserState, is_anonymous
from nudge.model.suppression import Suppression
from nudge.observability import MetricCounts, logger
from nudge.ports import DeliveryRouter, Ledger, Rechecks, UsageStore
from nudge.rulebook.ruleset import RuleSet
from nudge.services.journeys import journey_over
from nudge.services.suppression import SuppressionList


class DispatchContention(StateConflict):
    """The user's ledger kept moving under us; the batch is retried by its queue."""


class JourneyNotSaved(DispatchContention):
    """A journey decision's evaluation has not saved the instance yet; the batch is retried by its
    queue (at most its maxReceiveCount times, then its DLQ)."""


@dataclass(frozen=True)
class DispatchPorts:
    ledger: Ledger
    usage: UsageStore
    router: DeliveryRouter
    rechecks: Rechecks
    # The addresses that must not be sent to (bootstrap always sets it; None: no list, in tests of
    # other things).
    suppressions: SuppressionList | None = None


@dataclass
class DispatchResult:
    verdicts: list[Verdict] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    routed: int = 0
    conflicts: int = 0

    def outcomes(self) -> Counter[str]:
        """Counts by `outcome` and `outcome:reason`, for metrics and the demo's summary."""
        counts: Counter[str] = Counter()
        for v in self.verdicts:
            counts[v.outcome] += 1
            if v.reason:
                counts[f"{v.outcome}:{v.reason}"] += 1
        counts["duplicate"] += len(self.duplicates)
        counts["cancelled"] += len(self.cancelled)
        return counts


def correlation_of(batch: DecisionBatch) -> str:
    """The request (or sweep run) behind a batch: its decisions come from one evaluation and carry
    the same; a batch of lapsed deferrals alone carries none."""
    return next((d.correlation_id for d in batch.decisions if d.correlation_id), "")


def count_outcomes(result: DispatchResult, counts: MetricCounts) -> None:
    """`Decisions` by `outcome` (send, suppressed, deferred, held_out, duplicate, cancelled) and
    `Suppressed` by `reason`, added to the invocation's counts."""
    for verdict in result.verdicts:
        counts.add("Decisions", "outcome", verdict.outcome)
        if verdict.outcome == "suppressed":
            counts.add("Suppressed", "reason", verdict.reason or "unspecified")
    counts.add("Decisions", "outcome", "duplicate", len(result.duplicates))
    counts.add("Decisions", "outcome", "cancelled", len(result.cancelled))


def delivery_of(entry: LedgerEntry) -> Delivery:
    d = entry.decision
    return Delivery(
        subject=entry.subject,
        decision_id=d.decision_id,
        channel=d.channel,
        rule=d.rule,
        user=d.user,
        account=d.account,
    )


def _entry(verdict: Verdict, now: datetime) -> LedgerEntry:
    return LedgerEntry(
        decision=verdict.decision,
        outcome=verdict.outcome,
        reason=verdict.reason,
        status="queued" if verdict.outcome == "send" else "",
        deliver_at=verdict.deliver_at,
        channel_why=verdict.channel_why,
        recorded_at=now,
        updated_at=now,
    )


def dispatch(
    batch: DecisionBatch, rules: RuleSet, ports: DispatchPorts, now: datetime, *, attempts: int = 8
) -> DispatchResult:
    """Judge, record and route one evaluation's decisions; safe to run twice for one batch."""
    result = DispatchResult()
    if is_anonymous(batch.user):
        # The evaluator decides nothing for anonymous profiles; refused here too, whatever queued it.
        logger.warning(
            "dispatch: an anonymous profile; nothing sent", extra={"decisions": len(batch.decisions)}
        )
        return result
    traits: dict[str, Any] | None = None
    state: UserState | None = None
    suppressed: dict[str, list[Suppression]] = {}
    # userIds merged into this user (an alias): their delivery records join the user's once, so
    # caps, cooldowns, `once` and unsubscribes follow the merge (anonymous ids were never sent to).
    merged_users: list[str] = []
    guardrails = rules.guardrails
    keys = [(subject_of(d), d.decision_id) for d in batch.decisions]
    # An escalation's copies for the destinations escalations also go to (Slack, webhooks).
    copy_keys = [(subject_of(d), c) for d in batch.decisions for c in copy_ids(d, rules)]
    keys += copy_keys
    keys += [(f"USER#{batch.user}", decision_id) for decision_id in batch.lapsed]

    pending = False
    for _ in CONTENTION.with_attempts(attempts).tries():
        pending = False
        view = ports.ledger.load(batch.user, batch.account, keys)
        # A deferral comes back once: an entry rewritten at or after this batch was decided is this
        # batch's own earlier delivery (deferred again, say), not a deferral still waiting for it.
        returning = {
            i
            for i in batch.returning
            if (e := view.entries.get(i)) is not None
            and e.outcome == "deferred"
            and e.recorded_at < batch.decided_at
        }
        fresh = [
            d for d in batch.decisions if d.decision_id not in view.entries or d.decision_id in returning
        ]
        fresh_ids = {d.decision_id for d in fresh}
        lapsing = [
            i for i in batch.lapsed if (e := view.entries.get(i)) is not None and e.outcome == "deferred"
        ]
        if not fresh and not lapsing:
            # All seen before (a redelivery, or an account escalation another user raised first):
            # nothing to judge, so no traits to read and nothing to write.
            result.duplicates = [d.decision_id for d in batch.decisions]
            seen = [view.entries[d.decision_id] for d in batch.decisions]
            _follow_up([], seen + _found(view.entries, copy_keys), ports, result, now)
            return result
        if traits is None:
            users = ports.usage.load_users([batch.user])
            if batch.user not in users:
                # Erased (or never ingested): nothing may be sent, nothing about them written back.
                logger.info("dispatch: user has no state; nothing sent", extra={"user_id": batch.user})
                return result
            state = users[batch.user].value
            if not state.addressable:
                # No user id in the log: ids may be emails.
                logger.info("dispatch: the id was merged into another user; nothing sent")
                return result
            traits = state.trait_values()
            merged_users = [i for i in state.merged if not is_anonymous(i)]
            # Every channel a decision may fall back to: the guard judges each (channel choice).
            named = dict.fromkeys(c for d in batch.decisions for c in (d.channels or [d.channel]))
            addressed = [c for c in named if kind_of(c) is not None]
            if ports.suppressions is not None and addressed:
                suppressed = ports.suppressions.of_traits(traits, addressed)
        adopting = [i for i in merged_users if i not in view.record.value.adopted]
        if adopting:
            try:
                ports.ledger.adopt(batch.user, adopting, now)
            except StateConflict:
                result.conflicts += 1
            continue  # judge against the record as it is now
        # A journey's decision whose user converted or left since it was decided, or any decision
        # whose journey or trigger a deploy removed since: not sent.
        over = {d.decision_id: why for d in fresh if (why := _journey_over(rules, d, state, ports, now))}
        # Only the saved path's: a decision of an evaluation that lost the race for the record is not.
        paths = _paths(batch.user, [d for d in fresh if d.journey and d.decision_id not in over], ports)
        if "pending" in paths.values():
            pending = True
            continue  # the winning save has not landed yet: read again after a backoff
        over.update({i: SUPERSEDED for i, v in paths.items() if v == "superseded"})
        fresh = [d for d in fresh if d.decision_id not in over]
        escalations = [d for d in fresh if d.action == "escalate"]
        messages = [d for d in fresh if d.action != "escalate"]

        open_for = guardrails.spec.escalations.open_for
        already_open = view.escalation is not None and view.escalation.value.is_open(now, open_for)
        # One escalation per account at a time: the first of this batch, unless one is open.
        escalation_verdicts = [guard_escalation(d, already_open or i > 0) for i, d in enumerate(escalations)]
        opening = next((v for v in escalation_verdicts if v.outcome == "send"), None)
        verdicts, record = guard(
            messages,
            view.record.value,
            traits,
            already_open or opening is not None,
            rules,
            guardrails,
            now,
            suppressed,
        )
        verdicts = [_blocked(v, rules, now) for v in verdicts]
        verdicts += [
            Verdict(d, "suppressed", over[d.decision_id]) for d in batch.decisions if d.decision_id in over
        ]
        entries = [_entry(v, now) for v in [*escalation_verdicts, *verdicts]]
        if opening is not None:
            entries += [_copy(_entry(opening, now), dest, now) for dest in rules.destinations.escalations]
        cancelled = [
            view.entries[i].model_copy(
                update={
                    "outcome": "cancelled",
                    "reason": "no_longer_holds",
                    "deliver_at": None,
                    "updated_at": now,
                }
            )
            for i in lapsing
            if i not in fresh_ids
        ]
        changed = (
            record.sends != view.record.value.sends or record.last_by_rule != view.record.value.last_by_rule
        )
        escalation = None
        if opening is not None and batch.account:
            d = opening.decision
            version = view.escalation.version if view.escalation else 0
            escalation = (
                batch.account,
                Escalation(decision_id=d.decision_id, rule=d.rule, user=d.user, opened_at=now),
                version,
            )
        commit = Commit(
            user_id=batch.user,
            record=record if changed else None,
            record_version=view.record.version,
            entries=tuple([*entries, *cancelled]),
            replacing=frozenset(returning | {e.decision_id for e in cancelled}),
            escalation=escalation,
        )
        try:
            ports.ledger.commit(commit, now)
        except StateConflict:
            result.conflicts += 1
            continue
        result.verdicts = [*escalation_verdicts, *verdicts]
        result.cancelled = [e.decision_id for e in cancelled]
        duplicates = [view.entries[d.decision_id] for d in batch.decisions if d.decision_id not in fresh_ids]
        # Copies exist only with their escalation, written in one commit: found, it was a duplicate.
        duplicates += _found(view.entries, copy_keys)
        result.duplicates = [e.decision_id for e in duplicates]
        _follow_up(entries, duplicates, ports, result, now)
        return result
    if pending:
        raise JourneyNotSaved(
            f"user {batch.user}: a journey decision's instance was not saved past its step within "
            f"{attempts} reads; its queue delivers the batch again"
        )
    raise DispatchContention(f"user {batch.user}: ledger kept changing over {attempts} attempts")


def copy_ids(decision: Decision, rules: RuleSet) -> list[str]:
    """The ledger ids of an escalation's copies, one per destination escalations also go to."""
    if decision.action != "escalate":
        return []
    return [f"{decision.decision_id}.{dest}" for dest in rules.destinations.escalations]


def _copy(escalation: LedgerEntry, destination: str, now: datetime) -> LedgerEntry:
    """An escalation case's copy for one destination: its own entry, so its own claim (at most once
    per destination) and its own fate, under the account like the escalation."""
    d = escalation.decision
    decision = d.model_copy(
        update={
            "decision_id": f"{d.decision_id}.{destination}",
            "channel": "webhook",
            "destination": destination,
        }
    )
    return escalation.model_copy(update={"decision": decision, "recorded_at": now, "updated_at": now})


def _found(entries: dict[str, LedgerEntry], keys: Sequence[tuple[str, str]]) -> list[LedgerEntry]:
    return [entries[i] for _, i in keys if i in entries]


def _blocked(verdict: Verdict, rules: RuleSet, now: datetime) -> Verdict:
    """A journey's send held back follows the journey's `blocked:` policy (retry, skip or exit)."""
    journey = rules.journey_by_id.get(verdict.decision.journey) if verdict.decision.journey else None
    return when_blocked(journey, verdict, now) if journey is not None else verdict


def _journey_over(
    rules: RuleSet, decision: Decision, state: UserState | None, ports: DispatchPorts, now: datetime
) -> str | None:
    return journey_over(rules, decision, state, ports.usage, now) if state is not None else None


def _paths(user: str, decisions: Sequence[Decision], ports: DispatchPorts) -> dict[str, PathVerdict]:
    """Each journey decision judged against the user's saved instances (one read, none without)."""
    if not any(d.seq is not None for d in decisions):
        return {}
    saved = ports.rechecks.saved_journeys(user)
    return {d.decision_id: on_saved_path(saved.get(d.instance), d) for d in decisions}


def _follow_up(
    entries: Sequence[LedgerEntry],
    duplicates: Sequence[LedgerEntry],
    ports: DispatchPorts,
    result: DispatchResult,
    now: datetime,
) -> None:
    """Route what is to be sent, schedule what is deferred; for a redelivered batch, again what its
    first delivery may not have got to (both are idempotent downstream)."""
    every = [*entries, *duplicates]
    sends = [delivery_of(e) for e in every if e.outcome == "send" and e.status == "queued"]
    if sends:
        ports.router.route(sends)
        result.routed = len(sends)
    for entry in every:
        if entry.outcome == "deferred" and entry.deliver_at is not None:
            ports.rechecks.defer(entry.decision.user, entry.decision, entry.deliver_at, now)
        elif entry.outcome == "suppressed" and entry.decision.journey and entry.reason.endswith(EXIT_MARK):
            ports.rechecks.end_journey(entry.decision.user, entry.decision, now)
