"""Escalation cases for customer success: an at-risk account, why, and what to do next.

A case goes to a FIFO queue (grouped by account, so one account's cases stay in order) that
the CS tooling consumes; a short notice on an SNS topic tells the team a case is waiting. The
notice carries the account's name and owner and nothing about users.

Deduplication: the queue's MessageDeduplicationId is a hash of account, rule and day, so a
retried or redelivered open does not make a second case. SQS only remembers an id for 5
minutes, though: the same account, rule and day opened again later *is* a second message.
Keeping escalations to one a day per rule is the guardrails' cooldown's job, not this one's.
"""

from __future__ import annotations

import hashlib
import unicodedata
from datetime import date, timedelta
from typing import TYPE_CHECKING

from nudge.adapters.retry import DEFAULT_BACKOFF, call_with_backoff
from nudge.adapters.sns import SnsClient
from nudge.backoff import Backoff
from nudge.model.channels import EscalationCase
from nudge.model.errors import SendError
from nudge.observability import logger

if TYPE_CHECKING:
    from mypy_boto3_sqs.client import SQSClient

FIFO_DEDUPE_WINDOW = timedelta(minutes=5)
SNS_SUBJECT_MAX_CHARS = 100


def dedupe_id(account_id: str, rule: str, day: date) -> str:
    """64 hex chars: within SQS's 128-character limit whatever the ids' lengths and characters."""
    key = "\x1f".join((account_id, rule, day.isoformat()))
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _ascii_line(text: str) -> str:
    # SNS subjects: printable ASCII on one line. "Café" becomes "Cafe" rather than an error.
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return " ".join("".join(c if c.isprintable() else " " for c in folded).split())


def notice_subject(case: EscalationCase) -> str:
    subject = _ascii_line(f"At-risk account: {case.account_name or case.account_id}")
    return subject[:SNS_SUBJECT_MAX_CHARS].rstrip()


def notice_message(case: EscalationCase) -> str:
    """The notice's body: who, how bad, why (the rule) and what next. No user data."""
    money = f"{case.mrr:g}/month" if case.mrr is not None else "MRR unknown"
    lines = [
        f"Account: {case.account_name} ({case.account_id})",
        f"Plan: {case.plan or 'unknown'}, {money}, {case.seats if case.seats is not None else '?'} seats",
        f"CS owner: {case.cs_owner or 'unassigned'}",
        f"Health: {case.band} (score {case.score:g}), rule {case.rule}",
        f"Next step: {case.recommended_next_step}",
        f"Case: {case.case_id}",
    ]
    return "\n".join(lines)


class SqsEscalationDesk:
    def __init__(
        self,
        sqs_client: SQSClient,
        queue_url: str,
        sns_client: SnsClient | None = None,
        topic_arn: str | None = None,
        *,
        backoff: Backoff = DEFAULT_BACKOFF,
    ) -> None:
        if topic_arn is not None and sns_client is None:
            raise ValueError("a notice topic needs an SNS client")
        self.sqs = sqs_client
        self.queue_url = queue_url
        self.sns = sns_client
        self.topic_arn = topic_arn
        self.backoff = backoff

    def open(self, case: EscalationCase, day: date) -> str:
        response = call_with_backoff(
            lambda: self.sqs.send_message(
                QueueUrl=self.queue_url,
                MessageBody=case.model_dump_json(),
                MessageGroupId=case.account_id,
                MessageDeduplicationId=dedupe_id(case.account_id, case.rule, day),
            ),
            self.backoff,
        )
        message_id = response["MessageId"]
        logger.info("escalation queued", extra={"case_id": case.case_id, "rule": case.rule})
        if self.sns is not None and self.topic_arn is not None:
            self._notify(self.sns, self.topic_arn, case)
        return message_id

    def _notify(self, sns: SnsClient, topic_arn: str, case: EscalationCase) -> None:
        # The case is already queued, and the queue is the record CS works from. Failing here
        # would make the caller retry the whole open, and after SQS's 5-minute dedupe window
        # that queues a second case: a missing ping is the lesser harm, so log and go on.
        try:
            call_with_backoff(
                lambda: sns.publish(
                    TopicArn=topic_arn, Subject=notice_subject(case), Message=notice_message(case)
                ),
                self.backoff,
            )
        except SendError as exc:
            logger.warning(
                "escalation notice not published",
                extra={"case_id": case.case_id, "error": type(exc).__name__},
            )
