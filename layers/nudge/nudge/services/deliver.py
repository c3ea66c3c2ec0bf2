"""Deliver: one routed decision -> rendered message -> its channel, at most once.

    prepare (read traits, render; no side effect) -> claim queued -> sending (conditional write)
    -> send -> sent | failed | suppressed (opted out) | unknown

Why this order: whatever fails before the claim is simply retried by the queue. After the claim,
a send happens at most once. A throttled send (nothing left AWS) is released back to `queued` and
retried with the queue's backoff. A send whose outcome is unknown (the connection dropped after
the request left) is marked `unknown`, alarmed through a metric, and never retried: a message
lost is better than one sent twice. A copy of the delivery that finds its entry already past
`queued` sends nothing.

Prepare checks the address it is about to send to against the suppression list (dispatch checked
the user's addresses then; traits may have changed since), and builds the unsubscribe link, whose
token names that address's key. Marketing email gets the shared footer (unsubscribe link, postal
address) in both parts, List-Unsubscribe and List-Unsubscribe-Post; transactional email gets
neither. Every email is tagged `category` marketing or transactional for SES's event feedback.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

from nudge.conditions.features import AccountFacts
from nudge.domain.evaluate import evaluate
from nudge.domain.render import Rendered, RenderError, render, with_footer
from nudge.domain.suppression import address_of, blocking, kind_of
from nudge.domain.tokens import make_token
from nudge.domain.trigger import last_values
from nudge.model.channels import TREND_WEEKS, Email, EscalationCase, Push, Sms, WeekUsage
from nudge.model.errors import RecipientOptedOut, SendFailed, SendRejected, SendThrottled
from nudge.model.ledger import LedgerEntry
from nudge.model.queue import Delivery
from nudge.model.state import AccountRollup
from nudge.observability import logger
from nudge.ports import EmailSender, EscalationDesk, Ledger, Notifier, PushEndpoints, UsageStore
from nudge.rulebook.ruleset import RuleSet
from nudge.services.journeys import journey_over
from nudge.services.suppression import SuppressionList

Result = Literal["sent", "duplicate", "suppressed", "failed", "unknown", "gone"]


class DeliveryRetry(Exception):
    """Nothing was sent and the entry is back to `queued`: the queue must deliver it again later."""


@dataclass(frozen=True)
class Channels:
    email: EmailSender | None = None
    notifier: Notifier | None = None
    push_endpoints: PushEndpoints | None = None
    desk: EscalationDesk | None = None


@dataclass(frozen=True)
class DeliverPorts:
    ledger: Ledger
    usage: UsageStore
    channels: Channels
    unsubscribe_secrets: tuple[bytes, ...]
    unsubscribe_url: str  # GET/POST endpoint, the token is added as ?token=
    # The addresses that must not be sent to (bootstrap always sets it for email and SMS; None: no
    # list, in tests of other things).
    suppressions: SuppressionList | None = None


@dataclass(frozen=True)
class Delivered:
    result: Result
    reason: str = ""
    entry: LedgerEntry | None = None


@dataclass(frozen=True)
class _Prepared:
    send: Any  # () -> provider id


def deliver(delivery: Delivery, rules: RuleSet, ports: DeliverPorts, now: datetime) -> Delivered:
    entry = ports.ledger.get(delivery.subject, delivery.decision_id)
    if entry is None:
        # Erased with its user, or never committed (should not happen: routing follows the commit).
        logger.warning("deliver: no ledger entry; nothing sent", extra={"decision_id": delivery.decision_id})
        return Delivered("gone")
    if entry.decision.correlation_id:
        # The request (or sweep run) behind the decision: what follows logs under it.
        logger.set_correlation_id(entry.decision.correlation_id)
    if entry.status != "queued":
        if entry.status == "sending":
            # Claimed by another delivery that has not finished: still running, or crashed between
            # claim and send. Never resent; an operator sees the metric and the log.
            logger.error(
                "deliver: found claimed but not finished; not resending",
                extra={"decision_id": delivery.decision_id, "since": entry.updated_at.isoformat()},
            )
        return Delivered("duplicate", entry.status, entry)
    try:
        prepared = _prepare(entry, rules, ports, now)
    except RenderError as exc:
        moved = ports.ledger.move(
            entry.subject,
            entry.decision_id,
            ["queued"],
            "failed",
            now,
            reason=f"render_error: {exc.message}"[:200],
        )
        return Delivered("failed", "render_error", moved)
    except _NotSent as exc:
        moved = ports.ledger.move(
            entry.subject, entry.decision_id, ["queued"], "", now, outcome="suppressed", reason=str(exc)
        )
        return Delivered("suppressed", str(exc), moved)

    claimed = ports.ledger.move(entry.subject, entry.decision_id, ["queued"], "sending", now)
    if claimed is None:
        return Delivered("duplicate", "claimed_elsewhere")
    try:
        provider_id = prepared.send()
    except SendThrottled:
        ports.ledger.move(entry.subject, entry.decision_id, ["sending"], "queued", now, reason="throttled")
        raise DeliveryRetry(
            f"{delivery.channel} throttled; decision {delivery.decision_id} back to queued"
        ) from None
    except RecipientOptedOut:
        moved = ports.ledger.move(
            entry.subject, entry.decision_id, ["sending"], "", now, outcome="suppressed", reason="opted_out"
        )
        return Delivered("suppressed", "opted_out", moved)
    except SendRejected as exc:
        moved = ports.ledger.move(
            entry.subject, entry.decision_id, ["sending"], "failed", now, reason=exc.code
        )
        return Delivered("failed", exc.code, moved)
    except SendFailed:
        moved = ports.ledger.move(
            entry.subject, entry.decision_id, ["sending"], "unknown", now, reason="outcome_unknown"
        )
        logger.error(
            "deliver: send outcome unknown; not retried", extra={"decision_id": delivery.decision_id}
        )
        return Delivered("unknown", "outcome_unknown", moved)
    moved = ports.ledger.move(
        entry.subject, entry.decision_id, ["sending"], "sent", now, provider_id=provider_id
    )
    if moved is None:
        # Sent, but the ledger refused the mark (the entry changed under us): the send stands.
        logger.error("deliver: sent but could not mark sent", extra={"decision_id": delivery.decision_id})
    return Delivered("sent", "", moved)


class _NotSent(Exception):
    """Nothing may be sent: the user has nowhere to send to any more (their traits changed since
    dispatch, or erased), or the address is on the suppression list."""


def _prepare(entry: LedgerEntry, rules: RuleSet, ports: DeliverPorts, now: datetime) -> _Prepared:
    d = entry.decision
    users = ports.usage.load_users([d.user])
    if d.user not in users:
        raise _NotSent("user_erased")
    user = users[d.user].value
    traits = user.trait_values()
    account = ports.usage.load_account(d.account) if d.account else None
    account_traits = account.value.trait_values() if account else {}
    over = journey_over(rules, d, user, ports.usage, now)
    if over is not None:
        # Converted or left while the message waited in the queue: it is not sent.
        raise _NotSent(over)
    channels = ports.channels
    spec = rules.spec_by_rule[d.rule]
    g = rules.guardrails.spec

    if d.channel == "cs":
        desk = channels.desk
        if desk is None:
            raise RuntimeError("no escalation desk configured")
        rollup = ports.usage.load_rollup(d.account) if d.account else AccountRollup()
        facts = AccountFacts(dict(account_traits), rollup)
        evaluation = evaluate(rules, user, facts, None, now)
        case = EscalationCase(
            case_id=d.decision_id,
            account_id=d.account or d.user,
            account_name=str(account_traits.get("name") or d.account or ""),
            plan=_str(account_traits.get("plan")),
            mrr=_num(account_traits.get("mrr")),
            seats=_int(account_traits.get("seats")),
            cs_owner=_str(account_traits.get("cs_owner")),
            score=evaluation.account_score,
            band=evaluation.account_band,
            usage_trend=_trend(rollup),
            rule=d.rule,
            reason=d.reason,
            facts=dict(d.facts),
            recommended_next_step=spec.next_step or "Reach out to the account owner and review their usage.",
            user_id=d.user,
            opened_at=now,
        )
        return _Prepared(lambda: desk.open(case, now.date()))

    topic = spec.topic or spec.kind
    scope = f"{d.channel}:{topic}"
    address_key = None
    address = address_of(traits, d.channel)
    if kind_of(d.channel) is not None:
        if address is None:
            raise _NotSent("no_address")
        suppressions = ports.suppressions
        if suppressions is not None:
            found = suppressions.of_address(d.channel, address)
            if blocking(found, d.channel, topic, spec.transactional):
                raise _NotSent("suppression_list")
            address_key = suppressions.key(d.channel, address)
    token = make_token(list(ports.unsubscribe_secrets), d.user, scope, now, address_key)
    unsubscribe = f"{ports.unsubscribe_url}?token={token}"
    context = {
        "user": traits,
        "account": account_traits,
        "facts": {**d.facts, "summary": "; ".join(f"{k}: {v}" for k, v in d.facts.items())},
        "links": {**g.links, "unsubscribe": unsubscribe},
        "next_step": spec.next_step or "",
        "rule": d.rule,
        "trigger": d.trigger.model_dump(mode="json") if d.trigger else {"event": "", "properties": {}},
        "last": last_values(user),
    }
    rendered: Rendered = render(rules.templates[d.template], context, name=d.template)

    if d.channel == "email":
        email_sender = channels.email
        assert address is not None  # checked above
        if email_sender is None:
            raise RuntimeError("no email sender configured")
        marketing = not spec.transactional
        if marketing:
            # Lint refuses marketing email without a postal address, so the rules hold one here.
            rendered = with_footer(
                rendered, unsubscribe_url=unsubscribe, postal_address=g.sender.postal_address or ""
            )
        email = Email(
            to=address,
            sender=g.sender.email_from,
            reply_to=g.sender.reply_to,
            subject=rendered.subject,
            text=rendered.text,
            html=rendered.html,
            unsubscribe_url=unsubscribe if marketing else None,
            tags={
                "rule": d.rule,
                "decision": d.decision_id,
                "category": "marketing" if marketing else "transactional",
            },
        )
        return _Prepared(lambda: email_sender.send(email))

    notifier = channels.notifier
    if notifier is None:
        raise RuntimeError("no SNS notifier configured")
    if d.channel == "sms":
        assert address is not None  # checked above
        text = rendered.text if spec.transactional else f"{rendered.text} Reply STOP to opt out."
        sms = Sms(to=address, text=text, transactional=spec.transactional, sender_id=g.sender.sms_sender_id)
        return _Prepared(lambda: notifier.send_sms(sms))

    token_trait = _str(traits.get("push_token"))
    endpoints = channels.push_endpoints
    if not token_trait:
        raise _NotSent("no_address")
    if endpoints is None:
        raise RuntimeError("no push platform application configured")
    # Before the claim: registering the token sends nothing, and a failure here is simply retried.
    push = Push(
        endpoint_arn=endpoints.endpoint(token_trait),
        title=rendered.subject,
        body=rendered.text,
        data={"rule": d.rule},
    )
    return _Prepared(lambda: notifier.send_push(push))


def _trend(rollup: AccountRollup) -> list[WeekUsage]:
    weeks = sorted(rollup.weeks.items())[-TREND_WEEKS:]
    trend = []
    for key, stats in weeks:
        year, week = key.split("-W")
        start = date.fromisocalendar(int(year), int(week), 1)
        trend.append(WeekUsage(week_start=start, active_users=stats.active_users, sessions=stats.sessions))
    return trend


def _str(value: object) -> str | None:
    return str(value) if value not in (None, "") else None


def _num(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _int(value: object) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
