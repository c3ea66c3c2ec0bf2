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
neither. Every email is tagged for SES's event feedback (nudge.domain.feedback.feedback_tags): its
rule, decision, user and `category` (marketing or transactional), so feedback finds its entry.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

from nudge.conditions.features import AccountFacts
from nudge.domain.evaluate import evaluate
from nudge.domain.feedback import feedback_tags
from nudge.domain.inbox import in_app_message, safe_link
from nudge.domain.render import Rendered, RenderError, render, with_footer
from nudge.domain.suppression import address_of, blocking, kind_of
from nudge.domain.tokens import make_token
from nudge.domain.trigger import last_values
from nudge.domain.webhooks import ESCALATION_OPENED, RULE_FIRED, escalation_data, message, slack_message
from nudge.model.channels import TREND_WEEKS, Email, EscalationCase, Push, Sms, WeekUsage
from nudge.model.decisions import Decision
from nudge.model.errors import (
    ReceiverUnavailable,
    RecipientOptedOut,
    SendFailed,
    SendRejected,
    SendThrottled,
)
from nudge.model.inapp import InAppMessage
from nudge.model.ledger import LedgerEntry
from nudge.model.queue import Delivery
from nudge.model.state import AccountRollup, Stamped, UserState
from nudge.observability import logger
from nudge.ports import (
    DestinationPoster,
    EmailSender,
    EscalationDesk,
    Inbox,
    Ledger,
    Notifier,
    PushEndpoints,
    UsageStore,
)
from nudge.rulebook.destinations import Destination
from nudge.rulebook.ruleset import RuleSet
from nudge.rulebook.templates import InAppSpec, TemplateFile
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
    destinations: DestinationPoster | None = None  # webhooks and Slack (rules/destinations.yaml)
    inbox: Inbox | None = None


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
    # The suppression key of the address (or device token) sent to, for what the channel reports.
    address_key: str | None = None


# SNS's answer for a push endpoint it has disabled (the app was uninstalled, the token expired):
# the token is put on the suppression list, so it is never used again.
ENDPOINT_DISABLED = "EndpointDisabled"


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
    except SendThrottled as exc:
        why = "receiver_unavailable" if isinstance(exc, ReceiverUnavailable) else "throttled"
        ports.ledger.move(entry.subject, entry.decision_id, ["sending"], "queued", now, reason=why)
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
        if exc.code == ENDPOINT_DISABLED:
            _suppress_device(prepared, ports, now)
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


def _suppress_device(prepared: _Prepared, ports: DeliverPorts, now: datetime) -> None:
    """Put a disabled endpoint's device token on the suppression list. Best effort: if the list is
    down, the next push to the token fails the same way and records it then."""
    if prepared.address_key is None or ports.suppressions is None:
        return
    try:
        ports.suppressions.record(prepared.address_key, "push", "endpoint_disabled", now)
    except Exception:  # the send's outcome is recorded already; this is extra
        logger.warning("deliver: could not record a disabled push endpoint", exc_info=True)


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

    if d.channel == "webhook" and d.action == "escalate":
        # A copy of an escalation for a destination escalations also go to (Slack, a webhook).
        poster = _poster(channels)
        case = _case(
            d, d.decision_id.removesuffix(f".{d.destination}"), user, account_traits, rules, ports, now
        )
        trigger = d.trigger.model_dump(mode="json") if d.trigger else None
        target = _destination(rules, d.destination)
        if target.kind == "slack":
            body = slack_message(case, trigger)
            return _Prepared(lambda: poster.post_slack(target.id, body))
        posted = message(d.decision_id, ESCALATION_OPENED, escalation_data(case, trigger), now)
        return _Prepared(lambda: poster.post_signed(target.id, target.url, posted))

    if d.channel == "cs":
        desk = channels.desk
        if desk is None:
            raise RuntimeError("no escalation desk configured")
        case = _case(d, d.decision_id, user, account_traits, rules, ports, now)
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
    unsubscribe = ""  # a webhook goes to another system, not to the user: nothing to unsubscribe from
    if d.channel != "webhook":
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
    # The user's locale trait, then their SDK's (context.locale), then the default template.
    wanted = [_str(_stamped(user.traits, "locale")), _str(_stamped(user.context, "locale"))]
    template, locale = rules.template_for(d.template, wanted)
    rendered: Rendered = render(template, context, name=d.template, locale=locale)

    if d.channel == "webhook":
        poster = _poster(channels)
        target = _destination(rules, d.destination)
        data = {
            "decision_id": d.decision_id,
            "rule": d.rule,
            "kind": d.kind,
            "reason": d.reason,
            "decided_at": d.decided_at.isoformat(),
            "user": {"id": d.user, "traits": traits},
            "account": {"id": d.account, "traits": account_traits} if d.account else None,
            "facts": dict(d.facts),
            "trigger": context["trigger"],
            "message": {"subject": rendered.subject, "text": rendered.text},
        }
        posted = message(d.decision_id, RULE_FIRED, data, now)
        return _Prepared(lambda: poster.post_signed(target.id, target.url, posted))

    if d.channel == "in_app":
        inbox = channels.inbox
        if inbox is None:
            raise RuntimeError("no in-app inbox configured")
        # The default template's in-app part (link, expiry, survey): a locale's version translates
        # the texts, and a version without `in_app:` must not drop the survey for its readers.
        spec_in_app = template.in_app or rules.templates[d.template].in_app or InAppSpec()
        link = render(TemplateFile(subject=spec_in_app.link, text=""), context, name=d.template).subject
        inbox_message = in_app_message(
            message_id=d.decision_id,
            user_id=d.user,
            rule=d.rule,
            title=rendered.subject,
            body=rendered.text,
            link=safe_link(link),
            survey=spec_in_app.survey.survey() if spec_in_app.survey else None,
            expires_after=spec_in_app.expires,
            now=now,
        )
        # Stored once per decision (a conditional put): a second copy changes nothing.
        return _Prepared(lambda: _store(inbox, inbox_message))

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
            tags=feedback_tags(d.rule, d.decision_id, d.user, marketing),
        )
        return _Prepared(lambda: email_sender.send(email), address_key)

    notifier = channels.notifier
    if notifier is None:
        raise RuntimeError("no SNS notifier configured")
    if d.channel == "sms":
        assert address is not None  # checked above
        text = rendered.text if spec.transactional else f"{rendered.text} Reply STOP to opt out."
        sms = Sms(to=address, text=text, transactional=spec.transactional, sender_id=g.sender.sms_sender_id)
        return _Prepared(lambda: notifier.send_sms(sms), address_key)

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
    return _Prepared(lambda: notifier.send_push(push), address_key)


def _case(
    d: Decision,
    case_id: str,
    user: UserState,
    account_traits: Mapping[str, Any],
    rules: RuleSet,
    ports: DeliverPorts,
    now: datetime,
) -> EscalationCase:
    """What customer success gets: the account, its health and usage, the rule and what next."""
    rollup = ports.usage.load_rollup(d.account) if d.account else AccountRollup()
    facts = AccountFacts(dict(account_traits), rollup)
    evaluation = evaluate(rules, user, facts, None, now, programs=())  # the account's score: no program runs
    spec = rules.spec_by_rule[d.rule]  # a trigger's, or a journey's as a rule
    return EscalationCase(
        case_id=case_id,
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


def _poster(channels: Channels) -> DestinationPoster:
    if channels.destinations is None:
        raise RuntimeError("no webhook poster configured")
    return channels.destinations


def _destination(rules: RuleSet, name: str) -> Destination:
    found = rules.destinations.by_id.get(name)
    if found is None:
        # The rules changed since dispatch. Raised before the claim: the queue retries, then keeps
        # the delivery in its DLQ until the destination is back (nothing is lost).
        raise LookupError(f"destination {name!r} is not in rules/destinations.yaml")
    return found


def _store(inbox: Inbox, message: InAppMessage) -> str:
    inbox.put(message)
    return f"inbox:{message.message_id}"


def _trend(rollup: AccountRollup) -> list[WeekUsage]:
    weeks = sorted(rollup.weeks.items())[-TREND_WEEKS:]
    trend = []
    for key, stats in weeks:
        year, week = key.split("-W")
        start = date.fromisocalendar(int(year), int(week), 1)
        trend.append(WeekUsage(week_start=start, active_users=stats.active_users, sessions=stats.sessions))
    return trend


def _stamped(values: Mapping[str, Stamped], key: str) -> object:
    stamped = values.get(key)
    return stamped.v if stamped is not None else None


def _str(value: object) -> str | None:
    return str(value) if value not in (None, "") else None


def _num(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _int(value: object) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
