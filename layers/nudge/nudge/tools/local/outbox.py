"""What the local stack's fake AWS sent: GET /_local/outbox and GET /_local/escalations.

Sends are read where moto keeps them (its SES and SNS backends live in this process, behind the
local moto server) and joined to the ledger by provider message id, so each outbox entry says
which decision, rule and user it came from and when, on the simulated clock, it was sent.
"""

from __future__ import annotations

import email
import email.policy
import json
from collections.abc import Sequence
from email.message import EmailMessage
from typing import Any

from moto.ses.models import ses_backends
from moto.sns.models import sns_backends

from nudge.model.ledger import LedgerEntry
from nudge.tools.local.aws import ACCOUNT_ID, REGION


def _email_parts(raw: str) -> tuple[str, str, str, str, dict[str, str]]:
    message = email.message_from_string(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    text = html = ""
    for part in message.walk():
        if part.get_content_maintype() == "multipart":
            continue
        content = part.get_content()
        if part.get_content_type() == "text/plain" and not text:
            text = str(content)
        elif part.get_content_type() == "text/html" and not html:
            html = str(content)
    headers = {
        name: str(message[name]) for name in ("List-Unsubscribe", "List-Unsubscribe-Post") if message[name]
    }
    return str(message["To"] or ""), str(message["Subject"] or ""), text, html, headers


def _sent_by_provider_id() -> dict[str, dict[str, Any]]:
    """Provider message id -> what left moto's SES and SNS (address, subject, text, html)."""
    found: dict[str, dict[str, Any]] = {}
    for message in list(ses_backends[ACCOUNT_ID][REGION].sent_messages):
        raw = getattr(message, "raw_data", None)
        if raw is None:
            continue
        to, subject, text, html, headers = _email_parts(raw)
        found[message.id] = {"to": to, "subject": subject, "body": text, "html": html, "headers": headers}
    sns = sns_backends[ACCOUNT_ID][REGION]
    for message_id, sms in list(sns.sms_messages.items()):
        phone, text = sms
        found[message_id] = {"to": phone, "subject": "", "body": text, "html": ""}
    for arn, endpoint in list(sns.platform_endpoints.items()):
        for message_id, payload in list(endpoint.messages.items()):
            parsed = json.loads(payload)
            alert = json.loads(parsed.get("APNS", "{}")).get("aps", {}).get("alert", {})
            found[message_id] = {
                "to": arn,
                "subject": str(alert.get("title", "")),
                "body": str(parsed.get("default", "")),
                "html": "",
            }
    return found


def outbox(entries: Sequence[LedgerEntry]) -> list[dict[str, Any]]:
    """Every message sent to a user, oldest first, with its decision."""
    sent = _sent_by_provider_id()
    out: list[dict[str, Any]] = []
    for entry in entries:
        if entry.status != "sent" or entry.decision.channel == "cs" or entry.provider_id not in sent:
            continue
        d = entry.decision
        out.append(
            {
                "sent_at": entry.updated_at.isoformat(),
                "user_id": d.user,
                "channel": d.channel,
                "rule": d.rule,
                "decision_id": d.decision_id,
                "template": d.template,
                "message_id": entry.provider_id,
                "feedback": {kind: at.isoformat() for kind, at in sorted(entry.feedback.items())},
                **sent[entry.provider_id],
            }
        )
    return sorted(out, key=lambda m: (m["sent_at"], m["decision_id"]))
