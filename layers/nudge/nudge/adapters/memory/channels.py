"""Fake channels: email, SMS and push, the customer-success desk, webhooks and Slack, in memory."""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta
from typing import Any

from nudge.adapters.cs_desk import dedupe_id, notice_subject
from nudge.adapters.ses import build_mime
from nudge.adapters.sns import check_sms
from nudge.domain.webhooks import WebhookMessage
from nudge.model.channels import Email, EscalationCase, Push, Sms
from nudge.model.errors import ReceiverUnavailable, RecipientOptedOut, SendError


class MemoryEmailSender:
    """In-memory fake: builds the MIME like SES's sender would (so bad headers fail here too),
    records each email in `.sent` and returns "fake-1", "fake-2"...

    `fail_with` holds errors to raise on the next sends, one per send, in order.
    """

    def __init__(self, fail_with: SendError | Iterable[SendError] | None = None) -> None:
        self.sent: list[Email] = []
        self.fail_with: deque[SendError] = deque(
            [] if fail_with is None else [fail_with] if isinstance(fail_with, SendError) else fail_with
        )
        self._ids = itertools.count(1)

    def send(self, email: Email) -> str:
        if self.fail_with:
            raise self.fail_with.popleft()
        build_mime(email)
        self.sent.append(email)
        return f"fake-{next(self._ids)}"


class MemoryNotifier:
    """In-memory fake: `.sms` and `.pushes` record what was sent, numbers in `opted_out` are
    refused like SNS's opt-out list, and `fail_with` holds errors to raise on the next sends,
    one per send, in order. Ids are "fake-1", "fake-2"..."""

    def __init__(
        self,
        opted_out: Iterable[str] = (),
        fail_with: SendError | Iterable[SendError] | None = None,
    ) -> None:
        self.sms: list[Sms] = []
        self.pushes: list[Push] = []
        self.opted_out: set[str] = set(opted_out)
        self.fail_with: deque[SendError] = deque(
            [] if fail_with is None else [fail_with] if isinstance(fail_with, SendError) else fail_with
        )
        self._ids = itertools.count(1)

    def _next_failure(self) -> None:
        if self.fail_with:
            raise self.fail_with.popleft()

    def send_sms(self, sms: Sms) -> str:
        check_sms(sms)
        self._next_failure()
        if sms.to in self.opted_out:
            raise RecipientOptedOut("the phone number opted out of SMS")
        self.sms.append(sms)
        return f"fake-{next(self._ids)}"

    def send_push(self, push: Push) -> str:
        self._next_failure()
        self.pushes.append(push)
        return f"fake-{next(self._ids)}"


class MemoryEscalationDesk:
    """In-memory fake: `.cases` holds the cases queued, `.notices` the notice subjects.

    A case whose dedupe id was already seen is dropped, like a FIFO queue drops it. With a
    `window` (FIFO_DEDUPE_WINDOW to match SQS), an id is only remembered that long after the
    case's opened_at; without one, forever.
    """

    def __init__(self, window: timedelta | None = None) -> None:
        self.cases: list[EscalationCase] = []
        self.notices: list[str] = []
        self.window = window
        self._seen: dict[str, tuple[datetime, str]] = {}
        self._ids = itertools.count(1)

    def open(self, case: EscalationCase, day: date) -> str:
        key = dedupe_id(case.account_id, case.rule, day)
        seen = self._seen.get(key)
        if seen is not None and (self.window is None or case.opened_at - seen[0] < self.window):
            return seen[1]
        message_id = f"fake-{next(self._ids)}"
        self._seen[key] = (case.opened_at, message_id)
        self.cases.append(case)
        self.notices.append(notice_subject(case))
        return message_id


class MemoryDestinations:
    """In-memory fake of the webhook and Slack poster: `.signed` and `.slack` record each post
    ((destination, url, message) and (destination, body)); while `down` holds a destination id,
    posts to it raise ReceiverUnavailable, as the real poster does once its attempts are spent."""

    def __init__(self) -> None:
        self.signed: list[tuple[str, str, WebhookMessage]] = []
        self.slack: list[tuple[str, Mapping[str, Any]]] = []
        self.down: set[str] = set()

    def post_signed(self, destination: str, url: str, message: WebhookMessage) -> str:
        if destination in self.down:
            raise ReceiverUnavailable(f"destination {destination} is down")
        self.signed.append((destination, url, message))
        return message.webhook_id

    def post_slack(self, destination: str, body: Mapping[str, Any]) -> str:
        if destination in self.down:
            raise ReceiverUnavailable(f"destination {destination} is down")
        self.slack.append((destination, body))
        return f"slack:{destination}"
