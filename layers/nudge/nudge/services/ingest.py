"""The ingest use case: check messages, resolve identities, merge and fold them per person, write
each person once (with the pointers of the ids merged into them), retry on conflict."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from nudge.backoff import CONTENTION, Backoff
from nudge.domain.fold import FoldWindow, fold, fold_account, rollup_delta
from nudge.domain.identity import merge_states
from nudge.model.errors import StateConflict
from nudge.model.messages import Group, Message, Page, Screen, Track, event_name, event_properties
from nudge.model.properties import VALUE_CHARS_KEPT
from nudge.model.state import UserState, is_anonymous
from nudge.ports import UsageStore
from nudge.rulebook.plan import TrackingPlan
from nudge.services.identity import Issue, Profile, resolve


@dataclass(frozen=True)
class Problem:
    """A message-level problem, reported to the sender as {index, field, message}."""

    index: int
    field: str
    message: str


@dataclass(frozen=True)
class IngestLimits:
    max_future_skew: timedelta = timedelta(hours=1)
    retention: timedelta = timedelta(days=180)
    window: FoldWindow = field(default_factory=FoldWindow)
    write_attempts: int = 12


@dataclass
class IngestResult:
    accepted: int = 0
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    users_written: int = 0
    accounts_written: int = 0
    conflicts: int = 0


class Contention(Exception):
    """A user or account stayed contended through every attempt; the sender should retry."""


def check(
    index: int, message: Message, plan: TrackingPlan, limits: IngestLimits, now: datetime
) -> list[Problem]:
    """Problems that make a message unacceptable, and warnings, judged against `now`."""
    problems: list[Problem] = []
    if message.timestamp is not None:
        if message.timestamp > now + limits.max_future_skew:
            problems.append(
                Problem(
                    index,
                    "timestamp",
                    f"timestamp {message.timestamp.isoformat()} is in the future beyond the allowed "
                    f"clock skew ({limits.max_future_skew}); check the sender's clock",
                )
            )
        elif message.timestamp < now - limits.retention:
            problems.append(
                Problem(
                    index,
                    "timestamp",
                    f"timestamp {message.timestamp.isoformat()} is older than the retention window "
                    f"({limits.retention.days} days); such events are not kept",
                )
            )
    if plan.unplanned_events == "reject" and isinstance(message, Track | Page | Screen):
        name = event_name(message)
        if not plan.is_planned(name):
            problems.append(
                Problem(
                    index,
                    "event",
                    f"event '{name}' is not in the tracking plan; add it there or fix the name",
                )
            )
    if plan.property_errors == "reject":
        problems.extend(property_problems(index, message, plan))
    return problems


def property_problems(index: int, message: Message, plan: TrackingPlan) -> list[Problem]:
    """Declared properties of the wrong type, outside their enum, or missing when required.
    One dict lookup for an event that declares no properties (most of them)."""
    if not isinstance(message, Track | Page | Screen):
        return []
    name = event_name(message)
    declared = plan.properties_of.get(name)
    if declared is None:
        return []
    values = event_properties(message)
    problems: list[Problem] = []
    for prop, spec in declared.items():
        value = values.get(prop)
        top_name = prop == "name" and not isinstance(message, Track) and message.name is not None
        field = "name" if top_name else f"properties.{prop}"
        if value is None:
            if spec.required:
                problems.append(
                    Problem(index, field, f"event '{name}' requires property '{prop}' ({spec.type})")
                )
            continue
        wrong = spec.problem(value)
        if wrong is not None:
            problems.append(Problem(index, field, f"event '{name}': property '{prop}' {wrong}"))
    return problems


def property_warnings(index: int, message: Message, plan: TrackingPlan) -> list[Problem]:
    """What a message's properties lose, said to the sender: a kept text value too long to keep,
    and, under `property_errors: flag`, each mismatch (accepted; that property is not kept)."""
    if not isinstance(message, Track | Page | Screen):
        return []
    name = event_name(message)
    kept = plan.kept_of.get(name)
    if plan.property_errors == "reject" and kept is None:
        return []
    warnings = [
        Problem(p.index, p.field, f"{p.message} (accepted and flagged; not kept)")
        for p in (property_problems(index, message, plan) if plan.property_errors == "flag" else [])
    ]
    values = event_properties(message)
    for prop in kept or {}:
        value = values.get(prop)
        if isinstance(value, str) and len(value) > VALUE_CHARS_KEPT:
            warnings.append(
                Problem(
                    index,
                    f"properties.{prop}",
                    f"event '{name}': property '{prop}' is over {VALUE_CHARS_KEPT} characters; "
                    "accepted, but not kept for rules",
                )
            )
    return warnings


def unplanned_warning(index: int, message: Message, plan: TrackingPlan) -> Problem | None:
    if plan.unplanned_events != "flag" or not isinstance(message, Track | Page | Screen):
        return None
    name = event_name(message)
    if plan.is_planned(name):
        return None
    return Problem(index, "event", f"event '{name}' is not in the tracking plan (accepted and flagged)")


def ingest(
    messages: Sequence[tuple[int, Message]],
    plan: TrackingPlan,
    store: UsageStore,
    now: datetime,
    limits: IngestLimits = IngestLimits(),
    sleep: Callable[[float], None] = time.sleep,
    correlation_id: str = "",
) -> IngestResult:
    """Fold valid messages into usage state: one versioned write per user touched (plus one per
    account whose traits change), retried with jittered backoff when another writer got there first.

    `messages` carry their index in the request, so problems name the message they are about.
    `correlation_id` (the API request's id) is kept on each user's state written, where the store
    has room for it (DynamoDB), so the evaluator's logs and decisions carry it on.
    """
    result = IngestResult()
    accepted: list[tuple[int, Message]] = []
    groups: dict[str, list[Group]] = defaultdict(list)
    for index, message in messages:
        problems = check(index, message, plan, limits, now)
        if problems:
            result.errors.extend(problems)
            continue
        warning = unplanned_warning(index, message, plan)
        if warning is not None:
            result.warnings.append(warning)
        result.warnings.extend(property_warnings(index, message, plan))
        # Pin the dedupe key before defaulting the timestamp, so a retry of a message without
        # messageId or timestamp hashes the same.
        message.messageId = message.dedupe_key()
        if message.timestamp is None:
            message.timestamp = now
        accepted.append((index, message))
    # Another writer got there first: re-read, fold again, write again, after a jittered pause.
    backoff = replace(CONTENTION.with_attempts(limits.write_attempts), sleep=sleep)
    refused: set[int] = set()
    if accepted:
        refused = _write_users(accepted, plan, store, now, limits, backoff, correlation_id, result)
    for index, message in accepted:
        if index in refused:
            continue
        result.accepted += 1
        if isinstance(message, Group):
            groups[message.groupId].append(message)
    for account_id, account_groups in groups.items():
        written, conflicts = _write_account(account_id, account_groups, store, now, backoff)
        result.accounts_written += written
        result.conflicts += conflicts
    return result


def _write_users(
    messages: list[tuple[int, Message]],
    plan: TrackingPlan,
    store: UsageStore,
    now: datetime,
    limits: IngestLimits,
    backoff: Backoff,
    correlation_id: str,
    result: IngestResult,
) -> set[int]:
    """Resolve, merge, fold and write each person; the indexes of the messages refused (an alias
    that would make a cycle). A person whose write lost is resolved again from a fresh read (a
    concurrent merge may have moved their messages to someone else) with their messages only."""
    pending = messages
    issues: dict[int, tuple[list[Issue], list[Issue]]] = {}
    try:
        for _ in backoff.tries():
            resolution = resolve(pending, store)
            # The latest read decides what a message's problems are.
            for index, _message in pending:
                issues[index] = ([], [])
            for issue in resolution.refused:
                issues[issue.index][0].append(issue)
            for issue in resolution.warnings:
                issues[issue.index][1].append(issue)
            retry: list[tuple[int, Message]] = []
            for profile in resolution.profiles.values():
                try:
                    result.users_written += _write_profile(profile, plan, store, now, limits, correlation_id)
                except StateConflict:
                    result.conflicts += 1
                    retry += profile.messages
            if not retry:
                return {index for index, (errors, _) in issues.items() if errors}
            pending = sorted(retry, key=lambda item: item[0])
        raise Contention(f"{len(pending)} message(s) stayed contended after {backoff.attempts} attempts")
    finally:
        for errors, warnings in issues.values():
            result.errors += [Problem(i.index, i.field, i.message) for i in errors]
            result.warnings += [Problem(i.index, i.field, i.message) for i in warnings]


def _write_profile(
    profile: Profile,
    plan: TrackingPlan,
    store: UsageStore,
    now: datetime,
    limits: IngestLimits,
    correlation_id: str,
) -> int:
    """Merge what joins the person, fold their messages, write it all at once; 1 if written."""
    old = profile.stored.value if profile.stored else None
    merged = old or UserState(user_id=profile.user_id)
    others = [v.value if v else UserState(user_id=k) for k, v in profile.absorbed.items()]
    for other in others:
        merged = merge_states(merged, other, plan)
    new = fold(merged, profile.user_id, [m for _, m in profile.messages], plan, now, limits.window)
    if new == old:
        return 0  # every message was a duplicate, nothing merged: nothing to write
    # Anonymous profiles count in no account rollup: the person counts once they are known.
    rollup = None
    if not is_anonymous(profile.user_id):
        rollup = rollup_delta(old, new, [o for o in others if not is_anonymous(o.user_id)])
    store.save_user(
        new,
        profile.stored.version if profile.stored else 0,
        rollup,
        now,
        correlation_id=correlation_id,
        absorbed=[(k, v.version if v else 0) for k, v in profile.absorbed.items()],
    )
    return 1


def _write_account(
    account_id: str,
    groups: list[Group],
    store: UsageStore,
    now: datetime,
    backoff: Backoff,
) -> tuple[int, int]:
    conflicts = 0
    for _ in backoff.tries():
        stored = store.load_account(account_id)
        old = stored.value if stored else None
        new = fold_account(old, account_id, groups)
        if new == old:
            return 0, conflicts
        try:
            store.save_account(new, stored.version if stored else 0, now)
            return 1, conflicts
        except StateConflict:
            conflicts += 1
    raise Contention(f"account {account_id} stayed contended after {backoff.attempts} attempts")
