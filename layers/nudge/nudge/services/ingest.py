"""The ingest use case: check messages, resolve identities, merge and fold them per person, write
each person once (with the pointers of the ids merged into them), retry on conflict."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from nudge.backoff import CONTENTION, Backoff
from nudge.domain.bounds import TraitNames, trait_problems
from nudge.domain.fold import FoldWindow, fold, fold_account, rollup_delta
from nudge.domain.identity import merge_states
from nudge.model.errors import ItemTooLarge, StateConflict
from nudge.model.limits import VALUE_CHARS_KEPT
from nudge.model.messages import Group, Identify, Message, Page, Screen, Track, event_name, event_properties
from nudge.model.state import AccountState, RollupDelta, UserState, is_anonymous
from nudge.model.versioned import Versioned
from nudge.ports import UsageStore
from nudge.rulebook.plan import TrackingPlan
from nudge.services import bounded
from nudge.services.bounded import fitting, merge_issues, refused_for_traits
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
    if isinstance(message, Identify | Group):
        traits = message.traits.model_dump(exclude_unset=True)
        problems.extend(Problem(index, f, text) for f, text in trait_problems(traits))
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
    accepted = admit(messages, plan, now, limits, result)
    return store_admitted(accepted, plan, store, now, limits, sleep, correlation_id, result)


def admit(
    messages: Sequence[tuple[int, Message]],
    plan: TrackingPlan,
    now: datetime,
    limits: IngestLimits,
    result: IngestResult,
) -> list[tuple[int, Message]]:
    """The messages acceptable at `now` (problems and warnings into `result`), each with its dedupe
    key and timestamp pinned: what a buffered front door hands on (services.buffer) is then the
    same message however often the queue redelivers it."""
    accepted: list[tuple[int, Message]] = []
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
    return accepted


def store_admitted(
    accepted: list[tuple[int, Message]],
    plan: TrackingPlan,
    store: UsageStore,
    now: datetime,
    limits: IngestLimits,
    sleep: Callable[[float], None],
    correlation_id: str | Mapping[int, str],
    result: IngestResult,
) -> IngestResult:
    """Fold admitted messages into usage state and write it (the second half of `ingest`).

    correlation_id: one for all (an API request's), or by message index (the ingest queue's
    consumer folds many requests at once): a person's write then carries the request of their
    newest message."""
    groups: dict[str, list[tuple[int, Group]]] = defaultdict(list)
    # Another writer got there first: re-read, fold again, write again, after a jittered pause.
    backoff = replace(CONTENTION.with_attempts(limits.write_attempts), sleep=sleep)
    # Accounts are read before any user is written: a group refused for its account's traits is
    # refused whole, user side included.
    accepted, accounts = _admit_account_traits(accepted, store, result)
    refused: set[int] = set()
    if accepted:
        refused = _write_users(accepted, plan, store, now, limits, backoff, correlation_id, result)
    for index, message in accepted:
        if index in refused:
            continue
        result.accepted += 1
        if isinstance(message, Group):
            groups[message.groupId].append((index, message))
    for account_id, account_groups in groups.items():
        try:
            written, conflicts = _write_account(
                account_id, [g for _, g in account_groups], store, now, backoff, accounts.get(account_id)
            )
        except ItemTooLarge as exc:
            # Only an account stored before traits had bounds can be this large: its users joined
            # it (written above); its traits stay as they were, and the sender is told.
            written, conflicts = 0, 0
            result.warnings += [
                Problem(i, "traits", bounded.ACCOUNT_FULL.format(limit=exc.limit)) for i, _ in account_groups
            ]
        result.accounts_written += written
        result.conflicts += conflicts
    return result


def _admit_account_traits(
    messages: list[tuple[int, Message]], store: UsageStore, result: IngestResult
) -> tuple[list[tuple[int, Message]], dict[str, Versioned[AccountState] | None]]:
    """The messages left once each group that would give its account more distinct traits than it
    may keep is refused (in order, from the stored traits), and the accounts as read (one read
    each, which their write uses first)."""
    read: dict[str, Versioned[AccountState] | None] = {}
    names: dict[str, TraitNames] = {}
    kept: list[tuple[int, Message]] = []
    for index, message in messages:
        if isinstance(message, Group):
            account = message.groupId
            if account not in read:
                stored = read[account] = store.load_account(account)
                names[account] = TraitNames(stored.value.traits if stored else (), "account")
            problem = names[account].admit(message.traits.model_dump(exclude_unset=True))
            if problem is not None:
                result.errors.append(Problem(index, "traits", problem))
                continue
        kept.append((index, message))
    return kept, read


def _write_users(
    messages: list[tuple[int, Message]],
    plan: TrackingPlan,
    store: UsageStore,
    now: datetime,
    limits: IngestLimits,
    backoff: Backoff,
    correlation_id: str | Mapping[int, str],
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
                    written = _write_profile(
                        profile, plan, store, now, limits, _request_of(profile, correlation_id)
                    )
                except StateConflict:
                    result.conflicts += 1
                    retry += profile.messages
                    continue
                result.users_written += written.users
                for issue in written.refused:
                    issues[issue.index][0].append(issue)
                # A merge too large to make: its links are refused, the rest resolved again.
                retry += written.again
            if not retry:
                return {index for index, (errors, _) in issues.items() if errors}
            pending = sorted(retry, key=lambda item: item[0])
        raise Contention(f"{len(pending)} message(s) stayed contended after {backoff.attempts} attempts")
    finally:
        for errors, warnings in issues.values():
            result.errors += [Problem(i.index, i.field, i.message) for i in errors]
            result.warnings += [Problem(i.index, i.field, i.message) for i in warnings]


def _request_of(profile: Profile, correlation_id: str | Mapping[int, str]) -> str:
    if isinstance(correlation_id, str):
        return correlation_id
    newest = max((index for index, _ in profile.messages), default=None)
    return correlation_id.get(newest, "") if newest is not None else ""


@dataclass
class Written:
    """What became of one person's write: users written (0 or 1), messages refused, and messages
    to resolve again (a merge that could not be made)."""

    users: int = 0
    refused: list[Issue] = field(default_factory=list)
    again: list[tuple[int, Message]] = field(default_factory=list)


def _write_profile(
    profile: Profile,
    plan: TrackingPlan,
    store: UsageStore,
    now: datetime,
    limits: IngestLimits,
    correlation_id: str,
) -> Written:
    """Merge what joins the person, fold the messages their state has room for, write it all at
    once (nudge.services.bounded says what has room)."""
    old = profile.stored.value if profile.stored else None
    merged = old or UserState(user_id=profile.user_id)
    others: list[UserState] = []
    for key, record in profile.absorbed.items():
        if record is not None and key in merged.merged:
            # Listed as merged, yet a profile of its own again: its pointer expired (state TTL)
            # and the id came back with a new history, which merges like any other.
            merged = merged.model_copy(update={"merged": [i for i in merged.merged if i != key]})
        others.append(record.value if record else UserState(user_id=key))
        merged = merge_states(merged, others[-1], plan)
    written = Written(refused=refused_for_traits(merged, profile.messages))
    skip = {issue.index for issue in written.refused}
    messages = [(i, m) for i, m in profile.messages if i not in skip]
    if not messages and not others:
        return written  # every message refused: nothing to write (not even a new, empty user)

    def fold_in(state: UserState, more: Sequence[tuple[int, Message]]) -> UserState:
        return fold(state, profile.user_id, [m for _, m in more], plan, now, limits.window)

    new = fold_in(merged, messages)
    try:
        written.users = _save(profile, old, new, others, store, now, correlation_id)
        return written
    except ItemTooLarge as exc:
        limit = exc.limit
    # The slow path: what has room, message by message (the state as merged, with no message,
    # first: if even that is too large, the merge or the stored state is).
    base = fold_in(merged, [])
    if not store.fits(base, correlation_id, _rollup(profile, old, base, others)):
        if others:
            refused = merge_issues(messages, list(profile.absorbed), limit) or [
                bounded.full_issue(i, limit) for i, _ in messages
            ]
            written.refused += refused
            linked = {issue.index for issue in refused}
            written.again = [(i, m) for i, m in messages if i not in linked]
        else:
            written.refused += [bounded.full_issue(i, limit) for i, _ in messages]
        return written
    new, left_out, unjudged = fitting(
        base,
        messages,
        fold_in,
        lambda state: store.fits(state, correlation_id, _rollup(profile, old, state, others)),
    )
    try:
        written.users = _save(profile, old, new, others, store, now, correlation_id)
    except ItemTooLarge:
        # The store still refuses what its own measure let through: nothing of this person now.
        left_out, unjudged = [i for i, _ in messages], []
    written.refused += [bounded.over_issue(i, limit) for i in left_out]
    written.refused += [bounded.rest_issue(i, limit) for i in unjudged]
    return written


def _rollup(
    profile: Profile, old: UserState | None, new: UserState, others: list[UserState]
) -> RollupDelta | None:
    """The account rollup delta of the person's write (anonymous profiles count in no account
    rollup: the person counts once they are known)."""
    if is_anonymous(profile.user_id):
        return None
    return rollup_delta(old, new, [o for o in others if not is_anonymous(o.user_id)])


def _save(
    profile: Profile,
    old: UserState | None,
    new: UserState,
    others: list[UserState],
    store: UsageStore,
    now: datetime,
    correlation_id: str,
) -> int:
    """Write the person's new state (and the pointers of what merged into them); 1 if written."""
    if new == old:
        return 0  # every message was a duplicate, nothing merged: nothing to write
    store.save_user(
        new,
        profile.stored.version if profile.stored else 0,
        _rollup(profile, old, new, others),
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
    read: Versioned[AccountState] | None,
) -> tuple[int, int]:
    """Fold the groups into the account's traits (on `read`, the account as read before the users
    were written; read again after a conflict) and write them, versioned."""
    conflicts = 0
    for attempt in backoff.tries():
        stored = read if attempt == 0 else store.load_account(account_id)
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
