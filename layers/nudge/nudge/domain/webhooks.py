"""Webhooks, pure: what Nudge posts to a destination, how it is signed, how Slack shows a case.

Signing follows the Standard Webhooks specification (standardwebhooks.com): three headers,

    webhook-id         the message's id, the same on every retry (receivers dedupe on it):
                       the ledger entry's decision id
    webhook-timestamp  when this attempt was signed, integer seconds since the epoch
    webhook-signature  "v1,<base64 HMAC-SHA256 of '<id>.<timestamp>.<body>'>"

keyed with the destination's secret `whsec_<base64 of the key>`. The tests verify what this
makes with the specification's own library (PyPI `standardwebhooks`), never with this code.
The body is `{"type", "timestamp", "data"}`, serialized once: the bytes signed are the bytes sent.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from nudge.model.channels import EscalationCase

SECRET_PREFIX = "whsec_"  # noqa: S105 (the prefix of every secret, not a secret)
RULE_FIRED = "rule.fired"
ESCALATION_OPENED = "escalation.opened"


class BadWebhookSecret(ValueError):
    """The destination's secret is not `whsec_<base64>`: nothing can be signed with it."""


def secret_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_<base64>` secret (the prefix optional, padding optional)."""
    text = secret.strip().removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except ValueError as exc:
        raise BadWebhookSecret("a webhook secret is whsec_ followed by base64") from exc
    if not key:
        raise BadWebhookSecret("a webhook secret may not be empty")
    return key


def signature(key: bytes, webhook_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def signed_headers(key: bytes, webhook_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(key, webhook_id, timestamp, body),
    }


@dataclass(frozen=True)
class WebhookMessage:
    """One post: its id (stable across retries) and the exact body."""

    webhook_id: str
    event_type: str
    body: bytes


def message(webhook_id: str, event_type: str, data: Mapping[str, Any], at: datetime) -> WebhookMessage:
    envelope = {"type": event_type, "timestamp": at.isoformat(), "data": data}
    body = json.dumps(envelope, separators=(",", ":"), ensure_ascii=False, default=str).encode("utf-8")
    return WebhookMessage(webhook_id, event_type, body)


def explain_command(case: EscalationCase) -> str:
    """The `nudge rules explain` line that shows why the rule fired for the user behind the case
    (EVENTS.ndjson: the user's history, e.g. their export)."""
    user = shlex.quote(case.user_id or case.account_id)
    return f"nudge rules explain {user} --events EVENTS.ndjson --at {case.opened_at.isoformat()}"


def escalation_data(case: EscalationCase, trigger: Mapping[str, Any] | None) -> dict[str, Any]:
    data = case.model_dump(mode="json")
    data["trigger"] = dict(trigger) if trigger else None
    data["explain"] = explain_command(case)
    return data


def _money(mrr: float | None) -> str:
    return f"${mrr:,.0f}/month" if mrr is not None else "unknown"


def _escape(text: str) -> str:
    # Slack's mrkdwn: &, < and > are control characters (links, mentions); everything else is text.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# Slack refuses a section text over 3,000 characters (and the whole message with it).
SLACK_TEXT_MAX = 3000


def _cut(text: str) -> str:
    return text if len(text) <= SLACK_TEXT_MAX else text[: SLACK_TEXT_MAX - 1] + "…"


def slack_message(case: EscalationCase, trigger: Mapping[str, Any] | None) -> dict[str, Any]:
    """A Slack incoming-webhook body for a case: a one-line `text` (notifications, screen readers)
    and blocks a CS agent reads at a glance: account and MRR, why, what the user did, what next,
    and the command that explains the rule."""
    plain = case.account_name or case.account_id
    name = _escape(plain)
    # The header is plain_text: Slack shows it as is, so it takes the name unescaped; the
    # notification's text is mrkdwn, where a name could mention or link, so it is escaped.
    headline = f"At-risk account: {plain} ({_money(case.mrr)})"
    fallback = f"At-risk account: {name} ({_money(case.mrr)})"
    did = [f"• {_escape(str(k))}: {_escape(str(v))}" for k, v in case.facts.items()]
    if trigger and trigger.get("event"):
        did.insert(0, f"• last: {_escape(str(trigger['event']))} at {_escape(str(trigger.get('at', '')))}")
    trend = ", ".join(f"{w.week_start.isoformat()}: {w.active_users} active" for w in case.usage_trend)
    fields = [
        f"*Account*\n{name} (`{_escape(case.account_id)}`)",
        f"*MRR*\n{_money(case.mrr)}",
        f"*Plan*\n{_escape(case.plan or 'unknown')}, {case.seats if case.seats is not None else '?'} seats",
        f"*Health*\n{_escape(case.band)} (score {case.score:g})",
        f"*CS owner*\n{_escape(case.cs_owner or 'unassigned')}",
        f"*Rule*\n`{_escape(case.rule)}`",
    ]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": headline[:150]}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in fields]},
        {"type": "section", "text": {"type": "mrkdwn", "text": _cut(f"*Why*\n{_escape(case.reason)}")}},
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": _cut("*What the user did*\n" + ("\n".join(did) or "nothing recorded")),
            },
        },
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": _cut(f"*Next step*\n{_escape(case.recommended_next_step)}")},
        },
        {
            "type": "context",
            "elements": [
                {"type": "mrkdwn", "text": f"Usage: {_escape(trend) or 'no weeks recorded'}"},
                {"type": "mrkdwn", "text": f"Explain: `{_escape(explain_command(case))}`"},
                {"type": "mrkdwn", "text": f"Case `{_escape(case.case_id)}`"},
            ],
        },
    ]
    return {"text": fallback, "blocks": blocks}
