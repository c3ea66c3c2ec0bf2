"""`nudge rules explain`: why one user of an NDJSON history is or is not in each segment and rule.

The user's messages (and their account's, for its weekly usage) up to --at are replayed through
ingest into the in-memory store and the user judged there (`nudge.services.rule_tests`); each
segment, score signal and trigger is then shown test by test with the user's values, as text or
(--json) as data.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from nudge.adapters.memory import MemoryUsageStore
from nudge.conditions import features as F
from nudge.conditions import tree as C
from nudge.domain.channel_choice import Choice
from nudge.domain.verdicts import channel_for
from nudge.model.journeys import JourneyInstance, instance_key
from nudge.model.messages import Message
from nudge.rulebook.ruleset import RuleSet, TriggerSpec
from nudge.rulebook.yamlfile import did_you_mean
from nudge.services.rule_tests import Judged, judge_user, replay
from nudge.tools.args import aware
from nudge.tools.rules.backtest import backtest
from nudge.tools.rules.condition_lines import condition_lines, score_lines
from nudge.tools.rules.explain_journeys import journey_data, journey_lines
from nudge.tools.rules.history import iso, parse_messages, read_history, report_skipped


def explain_user(args: argparse.Namespace, rules: RuleSet) -> int:
    """Explain args.user of the history args.events at args.at (default: the file's end)."""
    raw = read_history(args.events)
    if raw is None:
        return 1
    at: datetime = args.at or _file_end(raw) or datetime.now(UTC)
    # Validate only the messages that matter (the user's and their account's): a 90-day history
    # holds hundreds of thousands, and pydantic would spend seconds on the others.
    chosen = _raw_of_user_and_account(raw, args.user)
    parsed, skipped = parse_messages(chosen, str(args.events))
    report_skipped(skipped)
    wanted = [m for m in parsed if m.timestamp is None or m.timestamp <= at]
    if not any(m.identity == args.user for m in wanted):
        users = {_raw_identity(item) for item in raw}
        print(
            f"{args.user}: no messages for this user in {args.events} up to {iso(at)}"
            f"{did_you_mean(args.user, (u for u in users if u))}",
            file=sys.stderr,
        )
        return 1
    store = MemoryUsageStore()
    refused = replay(store, wanted, rules, at)
    judged = judge_user(rules, store, args.user, at)
    if judged is None:
        example = f" (e.g. {refused[0]})" if refused else ""
        print(
            f"{args.user}: ingest refused every message of this user up to {iso(at)}{example}",
            file=sys.stderr,
        )
        return 1
    instances = history_instances(rules, wanted, judged.user.user_id)
    if args.json:
        data = explain_data(rules, judged)
        if rules.journeys:
            data["journeys"] = journey_data(rules, instances, judged.context)
        print(json.dumps(data, indent=2, default=str))
    else:
        lines = explain_lines(rules, judged, str(args.events))
        journeys = journey_lines(rules, instances, judged.context)
        print("\n".join([*lines, "", *journeys] if journeys else lines))
    return 0


def history_instances(
    rules: RuleSet, messages: Sequence[Message], user_id: str
) -> dict[str, JourneyInstance]:
    """The user's journey instances as production would hold them after these messages: the
    backtest's replay (evaluations at each day's end, the sweep, dispatch), over this user's and
    their account's messages only. Nothing to replay without journeys."""
    if not rules.journeys:
        return {}
    kept = backtest(rules, messages).journeys.get(user_id, [])
    return {instance_key(i.journey, i.key): i for i in kept}


def _file_end(raw: Sequence[dict[str, Any]]) -> datetime | None:
    """The latest timestamp in the file: explaining "as of the end of the history" by default."""
    return max((t for item in raw if (t := _timestamp(item)) is not None), default=None)


def _raw_identity(item: dict[str, Any]) -> str:
    """The user a raw message is about, as Message.identity would say, without validating it."""
    user, anonymous = item.get("userId"), item.get("anonymousId")
    if user not in (None, ""):
        return str(user)
    return f"anon:{anonymous}" if anonymous not in (None, "") else ""


def _merged_into(raw: Sequence[dict[str, Any]], user_id: str) -> set[str]:
    """The user's id and the ids the history links to it (calls with both ids, aliases, and on
    along the links): their messages are the user's once ingest has merged them."""
    links: dict[str, set[str]] = {}
    for item in raw:
        user, anonymous, previous = item.get("userId"), item.get("anonymousId"), item.get("previousId")
        if user in (None, ""):
            continue
        sources = {f"anon:{anonymous}"} if anonymous not in (None, "") else set()
        if item.get("type") == "alias" and previous not in (None, ""):
            sources |= {str(previous), f"anon:{previous}"}
        links.setdefault(str(user), set()).update(sources)
    found, todo = {user_id}, [user_id]
    while todo:
        for source in links.get(todo.pop(), set()) - found:
            found.add(source)
            todo.append(source)
    return found


def _raw_of_user_and_account(raw: Sequence[dict[str, Any]], user_id: str) -> list[dict[str, Any]]:
    """The user's messages (their merged ids' too) and those of everyone in the user's latest
    account (its weekly usage)."""
    ids = _merged_into(raw, user_id)
    own = [item for item in raw if _raw_identity(item) in ids]
    groups = [item for item in own if item.get("type") == "group" and item.get("groupId") not in (None, "")]
    if not groups:
        return own
    latest = max(groups, key=lambda item: _timestamp(item) or datetime.min.replace(tzinfo=UTC))
    account = str(latest["groupId"])
    members = {
        _raw_identity(item)
        for item in raw
        if item.get("type") == "group" and str(item.get("groupId")) == account
    }
    return [item for item in raw if _raw_identity(item) in members]


def _timestamp(item: dict[str, Any]) -> datetime | None:
    text = item.get("timestamp")
    if not isinstance(text, str):
        return None
    try:
        return aware(datetime.fromisoformat(text))
    except ValueError:
        return None


def explain_lines(rules: RuleSet, judged: Judged, source: str) -> list[str]:
    e, user, ctx = judged.evaluation, judged.user, judged.context
    now = judged.now
    signed_up = F.signed_up_at(user)
    lines = [f"{user.user_id} at {iso(now)} (messages up to then from {source})"]
    if signed_up:
        lines.append(f"  signed up {iso(signed_up)}, {F.age_days(user, now):.1f} days before")
    if user.last_meaningful:
        days = F.days_since_event(user, "any", now)
        lines.append(f"  last meaningful use {iso(user.last_meaningful)}, {days:.1f} days before")
    reached = ", ".join(
        f"{name} {at.date()}" for name, at in sorted(user.milestones.items(), key=lambda kv: kv[1])
    )
    lines.append(f"  milestones: {reached or 'none'}")
    counts = ", ".join(f"{n} {c}" for n, c in sorted(user.event_counts.items()))
    lines.append(f"  events: {counts or 'none'}")
    sessions = F.sessions_per_week(user, now)
    lines.append(
        f"  frequency {F.frequency_band(user, now)} ({sessions:.1f} sessions a week over 4 weeks), "
        f"active days 7d {F.active_days_within(user, 7, now)}, 28d {F.active_days_within(user, 28, now)}"
    )
    if judged.account is not None:
        traits = ", ".join(
            f"{k} {v}" for k, v in sorted(judged.account.traits.items()) if k not in ("created_at",)
        )
        lines.append(f"  account {user.account_id}: {traits or 'no traits'}")
    lines.append(f"  next time-based re-check: {iso(e.next_check_at) if e.next_check_at else 'none'}")
    lines.append("")
    lines += score_lines("user score", rules.user_score, e.score, e.band, ctx)
    if judged.account is not None:
        lines += score_lines("account score", rules.account_score, e.account_score, e.account_band, ctx)
    lines.append("")
    lines.append(f"Segments, in order: {user.user_id} is in the first that holds -> {e.segment}")
    earlier: str | None = None
    for segment in rules.segments:
        if segment.condition is None:
            verdict = (
                "YES, the user's segment (catch-all)" if segment.id == e.segment else "catch-all, not reached"
            )
            lines.append(f"  {segment.id}: {verdict}")
            continue
        ok = C.holds(segment.condition, ctx)
        if segment.id == e.segment:
            verdict = "YES, the user's segment"
        elif ok:
            verdict = f"holds, but {earlier} comes first"
        else:
            verdict = "no"
        lines.append(f"  {segment.id}: {verdict}")
        lines += condition_lines(segment.condition, ctx, 2)
        if ok and earlier is None:
            earlier = segment.id
    lines.append("")
    lines.append("Triggers (before cooldowns and guardrails):")
    fired = set(e.fired)
    escalated = {d.rule for d in e.decisions if d.action == "escalate"}
    for trigger in rules.triggers:
        spec = trigger.spec
        verdict = "FIRES" if trigger.id in fired else "does not fire"
        action = " > ".join(spec.channels) or str(spec.action)
        lines.append(f"  {trigger.id} ({spec.kind}, {action}, template {spec.template}): {verdict}")
        lines += condition_lines(trigger.condition, ctx, 2)
        choice = _channel(rules, judged, trigger.spec)
        if trigger.id in fired and choice is not None and len(spec.channels) > 1:
            lines.append(f"    channel: {choice.channel}" + (f" ({choice.why})" if choice.why else ""))
        if trigger.escalate_when is not None:
            escalates = "escalates to customer success" if trigger.id in escalated else "no escalation"
            lines.append(f"    escalate_when: {escalates}")
            lines += condition_lines(trigger.escalate_when, ctx, 3)
    return lines


def explain_data(rules: RuleSet, judged: Judged) -> dict[str, Any]:
    """The explanation as data: each condition as a tree of tests with values."""
    e, ctx = judged.evaluation, judged.context

    def tree(node: C.Node) -> dict[str, Any]:
        if isinstance(node, C.Check):
            return {
                "test": node.fact.describe,
                "value": node.fact.compute(ctx),
                "op": node.op,
                "expected": node.value,
                "holds": node.holds(ctx),
            }
        if isinstance(node, C.Not):
            return {"not": tree(node.item), "holds": C.holds(node, ctx)}
        key = "all" if isinstance(node, C.All) else "any"
        return {key: [tree(n) for n in node.items], "holds": C.holds(node, ctx)}

    return {
        "user": judged.user.user_id,
        "at": iso(judged.now),
        "segment": e.segment,
        "score": e.score,
        "band": e.band,
        "account": judged.user.account_id,
        "account_score": e.account_score,
        "account_band": e.account_band,
        "fired": e.fired,
        "next_check_at": iso(e.next_check_at) if e.next_check_at else None,
        "segments": [
            {"id": s.id, "chosen": s.id == e.segment, "condition": tree(s.condition) if s.condition else None}
            for s in rules.segments
        ],
        "triggers": [
            {
                "id": t.id,
                "fires": t.id in e.fired,
                "condition": tree(t.condition),
                "escalate_when": tree(t.escalate_when) if t.escalate_when else None,
                "channels": list(t.spec.channels),
                "channel": _channel_data(_channel(rules, judged, t.spec)),
            }
            for t in rules.triggers
        ],
    }


def _channel(rules: RuleSet, judged: Judged, spec: TriggerSpec) -> Choice | None:
    """The channel the rule's message would take for this user now (address, consent, quiet hours)."""
    return channel_for(spec, judged.user.trait_values(), rules.guardrails, judged.now)


def _channel_data(choice: Choice | None) -> dict[str, str] | None:
    if choice is None:
        return None
    return {"channel": choice.channel, "blocked": choice.reason, "why": choice.why}
