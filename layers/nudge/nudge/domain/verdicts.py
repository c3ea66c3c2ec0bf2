"""The guardrails, pure: one evaluation's decisions for one user -> a verdict for each.

    guard(decisions, record, traits, account_escalated, rules, now, suppressed) -> (verdicts, record')

At most one message per user per evaluation: decisions are judged highest priority first, and
the first that passes every check takes the slot (sent, deferred for quiet hours, or held out);
the others are suppressed as `lower_priority`. A rule naming several channels in order of preference
first gets the one the user can receive (nudge.domain.channel_choice: the first three checks below
and quiet hours, per channel); the checks then run on it. In order, each a reason when it fails:

    no_address       no email / phone / push token to send to
    suppression_list the address is on the suppression list for this (nudge.domain.suppression):
                     it unsubscribed, under any user id, erased or not
    no_consent       the channel needs opt-in and the user has not given it, or said no
    unsubscribed     the user unsubscribed from the channel, the topic, or everything
    account_escalated  the account has an open CS escalation (marketing waits for CS)
    cooldown / once  the rule was sent to this user within its cooldown (or ever, for once)
    cap_<scope>_<window>  a channel, global ("all") or journey cap is full
    lower_priority   another decision of this evaluation took the slot
    (held_out)       the global control group or the rule's holdout: recorded, not sent
    quiet_hours      inside the user's quiet hours and the rule drops (or: deferred to their end)

Transactional rules skip consent for marketing, preferences, escalation suppression, caps,
holdouts and quiet hours, and do not take the slot: they are not marketing.
Escalations (to CS, not to the user) are judged apart: one open escalation per account.
Webhooks (a hand-off to another system, not a message) pass on the rule's cooldown and `once` alone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from nudge.domain.channel_choice import Choice, choose
from nudge.domain.suppression import blocking
from nudge.model.decisions import Decision
from nudge.model.delivery import DeliveryRecord, Sent
from nudge.model.suppression import Suppression
from nudge.rulebook.guardrails import Cap, Guardrails, QuietHours
from nudge.rulebook.ruleset import RuleSet, TriggerSpec

Outcome = Literal["send", "suppressed", "deferred", "held_out"]
ADDRESS_TRAITS = {"email": "email", "sms": "phone", "push": "push_token"}
# Channels that need no address: in-app messages wait in the user's inbox for their next visit.
# Nor do they interrupt anyone, so they neither take nor wait for an evaluation's one message slot
# (caps, consent, cooldowns and holdouts apply as to any channel).
ADDRESSLESS = frozenset({"in_app"})


@dataclass(frozen=True)
class Verdict:
    decision: Decision
    outcome: Outcome
    reason: str  # why, in a word or two; "" for a plain send
    deliver_at: datetime | None = None  # for a deferral: when the quiet hours end
    # Of several channels in order of preference, which was chosen and why (nudge.domain.channel_choice);
    # "" for a rule naming one channel.
    channel_why: str = ""


@dataclass(frozen=True)
class RuleChoices:
    """A trigger's per-rule guardrail settings, resolved against guardrails.yaml."""

    journey: str
    topic: str
    transactional: bool
    holdout: float
    quiet: Literal["defer", "drop"]
    cooldown: timedelta
    once: bool


def choices(spec: TriggerSpec, guardrails: Guardrails) -> RuleChoices:
    quiet = guardrails.spec.quiet_hours
    return RuleChoices(
        journey=spec.journey or spec.kind,
        topic=spec.topic or spec.kind,
        transactional=spec.transactional,
        holdout=spec.holdout,
        quiet=spec.quiet_hours or (quiet.when_quiet if quiet else "defer"),
        cooldown=spec.cooldown,
        once=spec.once,
    )


def user_zone(traits: Mapping[str, Any], fallback: str) -> ZoneInfo:
    name = traits.get("timezone")
    if isinstance(name, str) and name:
        zone = _zone(name)
        if zone is not None:
            return zone
    zone = _zone(fallback)
    assert zone is not None  # guardrails.yaml's fallback is checked at load
    return zone


@lru_cache(maxsize=1024)
def _zone(name: str) -> ZoneInfo | None:
    """ZoneInfo keeps only 8 zones strongly cached; users span many more, each a file read."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None  # a product app sent something that is not an IANA name: use the fallback


def in_group(salt: str, key: str, percent: float) -> bool:
    """Deterministic membership of `percent`% of keys: same answer in every Lambda, every run."""
    if percent <= 0:
        return False
    digest = hashlib.sha256(f"{salt}|{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * 100 < percent


def quiet_until(quiet: QuietHours, zone: ZoneInfo, now: datetime) -> datetime | None:
    """When the quiet hours holding `now` end (UTC), or None when `now` is not inside them."""
    local = now.astimezone(zone)
    start, end = quiet.start, quiet.end
    t = local.time()
    if start == end:
        return None
    inside = (start <= t < end) if start < end else (t >= start or t < end)
    if not inside:
        return None
    end_day = local.date() if (start < end or t < end) else local.date() + timedelta(days=1)
    local_end = datetime.combine(end_day, end, tzinfo=zone)
    return local_end.astimezone(UTC)


def _calendar_key(at: datetime, zone: ZoneInfo, per: str) -> tuple[int, int] | date:
    local = at.astimezone(zone)
    if per == "day":
        return local.date()
    iso = local.isocalendar()
    return (iso.year, iso.week)


def _count(sends: Sequence[Sent], cap: Cap, zone: ZoneInfo, now: datetime) -> int:
    rolling = cap.rolling()
    if rolling is not None:
        return sum(1 for s in sends if now - rolling < s.at <= now)
    assert isinstance(cap.per, str)
    key = _calendar_key(now, zone, cap.per)
    return sum(1 for s in sends if _calendar_key(s.at, zone, cap.per) == key)


def _window_name(cap: Cap) -> str:
    if isinstance(cap.per, str):
        return cap.per
    seconds = int(cap.per.total_seconds())
    # Days, as marketers say them ("3 in 7d"), not weeks: the reason must match the file's words.
    return f"{seconds // 86400}d" if seconds % 86400 == 0 else f"{seconds // 3600}h"


def full_cap(
    record: DeliveryRecord, channel: str, journey: str, guardrails: Guardrails, zone: ZoneInfo, now: datetime
) -> str | None:
    """The first cap one more message on `channel` in `journey` would break, as a reason."""
    caps = guardrails.spec.caps
    scopes: list[tuple[str, Sequence[Sent], list[Cap]]] = [
        (channel, [s for s in record.sends if s.channel == channel], caps.of(channel)),
        ("all", record.sends, caps.all),
        (
            journey,
            [s for s in record.sends if s.journey == journey],
            guardrails.spec.journeys.get(journey, []),
        ),
    ]
    for scope, sends, limits in scopes:
        for cap in limits:
            if _count(sends, cap, zone, now) >= cap.max:
                return f"cap_{scope}_{_window_name(cap)}"
    return None


def _consent(
    channel: str, topic: str, traits: Mapping[str, Any], record: DeliveryRecord, g: Guardrails
) -> str:
    consent = traits.get("consent")
    given = consent.get(channel) if isinstance(consent, Mapping) else None
    mode = getattr(g.spec.consent, channel)
    if given is False or (mode == "opt_in" and given is not True):
        return "no_consent"
    if {"all", channel, topic, f"{channel}:{topic}"} & record.unsubscribed:
        return "unsubscribed"
    return ""


def _blocked(
    channel: str,
    rule: RuleChoices,
    traits: Mapping[str, Any],
    record: DeliveryRecord,
    g: Guardrails,
    suppressed: Mapping[str, Sequence[Suppression]],
) -> str:
    """Why the user cannot receive this rule on `channel` (address, suppression, consent), or ""."""
    address = ADDRESS_TRAITS.get(channel)
    if address is not None and not traits.get(address):
        return "no_address"
    if blocking(suppressed.get(channel, ()), channel, rule.topic, rule.transactional):
        return "suppression_list"
    if not rule.transactional:
        return _consent(channel, rule.topic, traits, record, g)
    return ""


def choose_channel(
    candidates: Sequence[str],
    rule: RuleChoices,
    traits: Mapping[str, Any],
    record: DeliveryRecord,
    g: Guardrails,
    suppressed: Mapping[str, Sequence[Suppression]] | None,
    quiet_now: Collection[str],
) -> Choice:
    """Of a rule's channels, the first the user can receive (nudge.domain.channel_choice)."""

    def blocked(channel: str) -> str:
        return _blocked(channel, rule, traits, record, g, suppressed or {})

    return choose(candidates, traits, blocked, quiet_now)


def channel_for(spec: TriggerSpec, traits: Mapping[str, Any], g: Guardrails, now: datetime) -> Choice | None:
    """The channel a rule's message would take for a user at `now`, by address, consent and quiet
    hours (not the suppression list, unsubscribes or caps: the CLI's replays have none of them);
    None for an escalation. What `nudge rules explain` and the backtest show."""
    if not spec.channels:
        return None
    rule = choices(spec, g)
    _, held, _ = quiet_hold(g, traits, now)
    held_now = () if rule.transactional else held
    return choose_channel(spec.channels, rule, traits, DeliveryRecord(), g, None, held_now)


def quiet_hold(
    g: Guardrails, traits: Mapping[str, Any], now: datetime
) -> tuple[ZoneInfo, Collection[str], datetime | None]:
    """The user's zone, the channels quiet hours hold at `now` (for marketing: transactional
    messages ignore them) and when those quiet hours end (None outside them)."""
    quiet = g.spec.quiet_hours
    zone = user_zone(traits, quiet.fallback_timezone if quiet else "UTC")
    until = quiet_until(quiet, zone, now) if quiet else None
    return zone, (quiet.channels if quiet and until is not None else ()), until


def guard(
    decisions: Sequence[Decision],
    record: DeliveryRecord,
    traits: Mapping[str, Any],
    account_escalated: bool,
    rules: RuleSet,
    guardrails: Guardrails,
    now: datetime,
    suppressed: Mapping[str, Sequence[Suppression]] | None = None,
) -> tuple[list[Verdict], DeliveryRecord]:
    """Judge one evaluation's user-facing decisions (not escalations; see `guard_escalation`).

    `suppressed`: what the suppression list holds against the address each channel would send to
    (channel -> records). A decision coming back from a quiet-hours deferral is judged again like a
    new one: the world may have changed (caps included).
    """
    zone, held_quiet, until = quiet_hold(guardrails, traits, now)
    sends = list(record.sends)
    last_by_rule = dict(record.last_by_rule)
    slot_taken = False
    verdicts: list[Verdict] = []
    control = (
        in_group(guardrails.spec.holdout.salt, decisions[0].user, guardrails.spec.holdout.control_group)
        if decisions
        else False
    )

    for decision in sorted(decisions, key=lambda d: (-d.priority, d.rule)):
        spec = rules.spec_by_rule[decision.rule]
        rule = choices(spec, guardrails)
        current = DeliveryRecord(sends=sends, last_by_rule=last_by_rule, unsubscribed=record.unsubscribed)

        if decision.channel == "webhook":
            # A hand-off to another system (a CRM, an ad audience), not a message to the user: no
            # address, consent, cap, quiet hours, holdout or slot; the rule's cooldown and `once` hold.
            last = last_by_rule.get(decision.rule)
            repeat = ""
            if last is not None:
                repeat = "once" if rule.once else "cooldown" if now - last < rule.cooldown else ""
            if repeat:
                verdicts.append(Verdict(decision, "suppressed", repeat))
            else:
                verdicts.append(Verdict(decision, "send", ""))
                last_by_rule[decision.rule] = now
            continue
        held_now = () if rule.transactional else held_quiet
        choice = choose_channel(
            decision.channels or [decision.channel], rule, traits, current, guardrails, suppressed, held_now
        )
        if choice.channel != decision.channel:
            decision = decision.model_copy(update={"channel": choice.channel})
        why = choice.why
        reason = choice.reason
        marketing_held = account_escalated and guardrails.spec.escalations.suppress_marketing
        if not reason and not rule.transactional and marketing_held:
            reason = "account_escalated"
        if not reason:
            last = last_by_rule.get(decision.rule)
            if last is not None and rule.once:
                reason = "once"
            elif last is not None and now - last < rule.cooldown:
                reason = "cooldown"
        if not reason and not rule.transactional:
            reason = full_cap(current, decision.channel, rule.journey, guardrails, zone, now) or ""
            if not reason and slot_taken and decision.channel not in ADDRESSLESS:
                reason = "lower_priority"
        if reason:
            verdicts.append(Verdict(decision, "suppressed", reason, channel_why=why))
            continue
        if rule.transactional:
            verdicts.append(Verdict(decision, "send", "", channel_why=why))
            last_by_rule[decision.rule] = now
            continue

        slot_taken = slot_taken or decision.channel not in ADDRESSLESS
        held = "control_group" if control else ""
        if not held and in_group(
            guardrails.spec.holdout.salt, f"{decision.rule}|{decision.user}", rule.holdout
        ):
            held = "rule_holdout"
        if held:
            # Held out users keep the treated users' cooldowns, so both groups are counted alike.
            verdicts.append(Verdict(decision, "held_out", held, channel_why=why))
            last_by_rule[decision.rule] = now
            continue
        if decision.channel in held_now:
            if rule.quiet == "drop":
                verdicts.append(Verdict(decision, "suppressed", "quiet_hours", channel_why=why))
            else:
                verdicts.append(Verdict(decision, "deferred", "quiet_hours", until, why))
            continue
        verdicts.append(Verdict(decision, "send", "", channel_why=why))
        sends.append(Sent(at=now, channel=decision.channel, rule=decision.rule, journey=rule.journey))
        last_by_rule[decision.rule] = now

    horizon = now - guardrails.longest_window()
    kept = [s for s in sends if s.at > horizon]
    # The ids already adopted stay adopted: forgotten, their old sends would merge in again.
    return verdicts, DeliveryRecord(
        sends=kept, last_by_rule=last_by_rule, unsubscribed=record.unsubscribed, adopted=record.adopted
    )


def guard_escalation(decision: Decision, open_escalation: bool) -> Verdict:
    """One open escalation per account: CS works one case at a time, whatever rule raised it."""
    if open_escalation:
        return Verdict(decision, "suppressed", "escalation_open")
    return Verdict(decision, "send", "")


def cap_breaches(sends: Sequence[Sent], guardrails: Guardrails, zone: ZoneInfo) -> list[str]:
    """An audit, after the fact: every cap one user's sends broke, as "<reason> at <time>".

    The guardrails never let this happen; the demo and tests run it over the whole ledger to show
    it (a cap counted at each send, over the sends up to and including it)."""
    breaches: list[str] = []
    ordered = sorted(sends, key=lambda sent: sent.at)
    for index, sent in enumerate(ordered):
        before = DeliveryRecord(sends=ordered[:index])
        reason = full_cap(before, sent.channel, sent.journey, guardrails, zone, sent.at)
        if reason:
            breaches.append(f"{reason} at {sent.at.isoformat()}")
    return breaches
