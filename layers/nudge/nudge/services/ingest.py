"""The ingest use case: check messages, fold them per user, write each user once, retry on conflict."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import partial

from nudge.backoff import CONTENTION, Backoff
from nudge.domain.fold import FoldWindow, fold, fold_account, rollup_delta
from nudge.model.errors import StateConflict
from nudge.model.messages import Group, Message, Page, Screen, Track, event_name, event_properties
from nudge.model.properties import VALUE_CHARS_KEPT
from nudge.model.state import RollupDelta, UserState
from nudge.ports import UsageStore
from nudge.rulebook.plan import TrackingPlan

SaveUser = Callable[[UserState, int, RollupDelta | None, datetime], None]


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
    by_user: dict[str, list[Message]] = defaultdict(list)
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
        by_user[message.identity].append(message)
        if isinstance(message, Group):
            groups[message.groupId].append(message)
        result.accepted += 1
    # Another writer got there first: re-read, fold again, write again, after a jittered pause.
    backoff = replace(CONTENTION.with_attempts(limits.write_attempts), sleep=sleep)
    if by_user:
        save = partial(store.save_user, correlation_id=correlation_id)
        result.users_written, conflicts = _write_users(by_user, plan, store, save, now, limits, backoff)
        result.conflicts += conflicts
    for account_id, account_groups in groups.items():
        written, conflicts = _write_account(account_id, account_groups, store, now, backoff)
        result.accounts_written += written
        result.conflicts += conflicts
    return result


def _write_users(
    by_user: dict[str, list[Message]],
    plan: TrackingPlan,
    store: UsageStore,
    save: SaveUser,
    now: datetime,
    limits: IngestLimits,
    backoff: Backoff,
) -> tuple[int, int]:
    pending = dict(by_user)
    written = conflicts = 0
    for _ in backoff.tries():
        current = store.load_users(list(pending))
        retry: dict[str, list[Message]] = {}
        for user_id, user_messages in pending.items():
            stored = current.get(user_id)
            old = stored.value if stored else None
            new = fold(old, user_id, user_messages, plan, now, limits.window)
            if new == old:
                continue  # every message was a duplicate: nothing to write
            try:
                save(new, stored.version if stored else 0, rollup_delta(old, new), now)
                written += 1
            except StateConflict:
                conflicts += 1
                retry[user_id] = user_messages
        if not retry:
            return written, conflicts
        pending = retry
    raise Contention(f"{len(pending)} user(s) stayed contended after {backoff.attempts} attempts")


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
