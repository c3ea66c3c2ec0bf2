"""SES feedback: one event -> the suppression list and the decision's ledger entry.

    permanent bounce -> suppress the address for all email (reason bounce)
    complaint        -> suppress it for marketing email (reason complaint)
    transient bounce -> count it; the SOFT_BOUNCE_LIMIT-th within the window suppresses (soft_bounce)
    every event      -> noted on the decision's ledger entry (found by the message's tags)

The suppression list comes first: it is what protects the sender, and it needs no ledger entry (the
recipient address is in the event), so feedback for an erased user or an untagged message still
suppresses. Both writes are idempotent, so a redelivered event changes nothing. An event whose entry
cannot be found (untagged, erased, expired, another stack's) is answered `matched=False`: counted and
dropped by the caller, never retried.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from nudge.backoff import CONTENTION
from nudge.domain.feedback import DECISION_TAG, RULE_TAG, USER_TAG, decode_user, soft_bounces, verdict
from nudge.model.errors import StateConflict
from nudge.model.feedback import Feedback
from nudge.model.limits import SOFT_BOUNCE_LIMIT, SOFT_BOUNCE_WINDOW_DAYS
from nudge.model.suppression import Reason
from nudge.ports import FeedbackLedger, SoftBounces
from nudge.services.suppression import SuppressionList

CHANNEL = "email"


@dataclass(frozen=True)
class FeedbackPorts:
    ledger: FeedbackLedger
    suppressions: SuppressionList
    soft_bounces: SoftBounces
    soft_bounce_limit: int = SOFT_BOUNCE_LIMIT
    soft_bounce_window: timedelta = timedelta(days=SOFT_BOUNCE_WINDOW_DAYS)


@dataclass(frozen=True)
class FeedbackResult:
    feedback: Feedback
    rule: str  # from the message's tag; "" when untagged
    matched: bool  # its ledger entry was found and noted
    suppressed: tuple[Reason, ...] = field(default=())  # suppression records written (one per recipient)


def handle_feedback(feedback: Feedback, ports: FeedbackPorts, now: datetime) -> FeedbackResult:
    suppressed: list[Reason] = []
    judged = verdict(feedback)
    if judged.reason is not None or judged.count_soft_bounce:
        for address in feedback.recipients:
            key = ports.suppressions.key(CHANNEL, address)
            if key is None:
                continue
            reason = judged.reason
            if judged.count_soft_bounce and _soft_bounce_limit_reached(key, feedback, ports, now):
                reason = "soft_bounce"
            if reason is not None:
                ports.suppressions.record(key, judged.scope, reason, feedback.at)
                suppressed.append(reason)
    return FeedbackResult(
        feedback=feedback,
        rule=feedback.tags.get(RULE_TAG, ""),
        matched=_note_on_ledger(feedback, ports),
        suppressed=tuple(suppressed),
    )


def _soft_bounce_limit_reached(key: str, feedback: Feedback, ports: FeedbackPorts, now: datetime) -> bool:
    """Count this transient bounce for the address; whether it reached the limit in the window."""
    for _ in CONTENTION.tries():
        stored = ports.soft_bounces.load(key)
        kept, reached = soft_bounces(
            stored.value,
            feedback.message_id,
            feedback.at,
            now,
            ports.soft_bounce_window,
            ports.soft_bounce_limit,
        )
        try:
            ports.soft_bounces.save(key, kept, stored.version, now + ports.soft_bounce_window)
        except StateConflict:
            continue
        return reached
    raise StateConflict("soft bounces of an address kept changing")


def _note_on_ledger(feedback: Feedback, ports: FeedbackPorts) -> bool:
    decision_id = feedback.tags.get(DECISION_TAG)
    user = decode_user(feedback.tags.get(USER_TAG, ""))
    if not decision_id or not user:
        return False
    entry = ports.ledger.record_feedback(f"USER#{user}", decision_id, feedback.kind, feedback.at)
    return entry is not None
