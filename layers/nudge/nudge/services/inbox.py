"""The in-app inbox's use cases: read it, act on a message, answer a survey, the checklist.

What a user does with a message folds back as an event through ingest, the one way anything lands
in usage state, so rules, journeys and lift read it like any other event: `in_app_seen`,
`in_app_clicked`, `in_app_dismissed` ({rule, message_id}) and `survey_answered` ({rule,
message_id, <the survey's property>: answer}). Each event's messageId is derived from the message
and the action (`inapp:<id>:<action>`), so a page that reports "seen" on every visit counts once,
and a retry after a failure halfway changes nothing twice. The event goes first, the message's
status second: a failure between them is repaired by the retry (the event deduped, the status set).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from nudge.domain.inbox import answer_problem, checklist
from nudge.model.inapp import ACTION_EVENTS, STATUS_RANK, SURVEY_EVENT, Checklist, InAppAction, InAppMessage
from nudge.model.limits import INBOX_MESSAGES_SHOWN
from nudge.model.messages import Message, Track
from nudge.model.state import UserState
from nudge.ports import Inbox, UsageStore
from nudge.rulebook.plan import TrackingPlan
from nudge.services.ingest import IngestLimits, ingest

# Another request moving the same message between our read and our write: read again.
ATTEMPTS = 4


class NotInInbox(Exception):
    """The message is not in this user's inbox (expired, erased, another user's, never sent)."""


class AnswerRefused(Exception):
    """A survey answer that cannot be taken; the message names why (400)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class InboxPorts:
    inbox: Inbox
    usage: UsageStore
    plan: TrackingPlan
    limits: IngestLimits


def read_inbox(inbox: Inbox, user_id: str, now: datetime) -> list[InAppMessage]:
    """What the page shows: the user's live messages, newest first, without those dismissed."""
    return [m for m in inbox.list(user_id, now, INBOX_MESSAGES_SHOWN) if m.status != "dismissed"]


def act(ports: InboxPorts, user_id: str, message_id: str, action: InAppAction, now: datetime) -> InAppMessage:
    """The user saw, clicked or dismissed a message: its event, then its status (never backwards)."""
    message = ports.inbox.get(user_id, message_id)
    if message is None or message.user_id != user_id or not message.live(now):
        raise NotInInbox(message_id)
    if STATUS_RANK[action] <= STATUS_RANK[message.status]:
        # Recorded before its status was set, or implied by a later one (a click was seen): nothing
        # to count again, even past the ingest dedupe window.
        return message
    _record(
        ports,
        user_id,
        ACTION_EVENTS[action],
        {"rule": message.rule, "message_id": message_id},
        f"inapp:{message_id}:{action}",
        now,
    )
    return _advance(ports.inbox, message, action, None, now)


def answer_survey(
    ports: InboxPorts, user_id: str, message_id: str, answer: object, now: datetime
) -> InAppMessage:
    """A survey's answer: `survey_answered` with the answer in the survey's property, then the
    message marked answered. AnswerRefused when the message is not this user's live survey or the
    answer is not one it takes."""
    message = ports.inbox.get(user_id, message_id)
    problem = answer_problem(message, user_id, answer, now)
    if problem is not None:
        raise AnswerRefused(*problem)
    assert message is not None
    assert message.survey is not None
    assert isinstance(answer, str)
    properties: dict[str, object] = {
        "rule": message.rule,
        "message_id": message_id,
        message.survey.property: answer,
    }
    _record(ports, user_id, SURVEY_EVENT, properties, f"survey:{message_id}", now)
    return _advance(ports.inbox, message, "answered", answer, now)


def user_checklist(usage: UsageStore, plan: TrackingPlan, user_id: str) -> Checklist:
    """The onboarding checklist from the milestone definitions and the user's milestones."""
    users = usage.load_users([user_id])
    state = users[user_id].value if user_id in users else UserState(user_id=user_id)
    return checklist(plan.milestones, state.milestones)


def _record(
    ports: InboxPorts, user_id: str, event: str, properties: dict[str, object], message_id: str, now: datetime
) -> None:
    track = Track(userId=user_id, event=event, properties=properties, messageId=message_id, timestamp=now)
    messages: list[tuple[int, Message]] = [(0, track)]
    result = ingest(messages, ports.plan, ports.usage, now, ports.limits)
    if result.errors:
        # The plan refused the event (a property changed type since the message was sent).
        first = result.errors[0]
        raise AnswerRefused(first.field, first.message)


def _advance(
    inbox: Inbox, message: InAppMessage, status: str, answer: str | None, now: datetime
) -> InAppMessage:
    current: InAppMessage | None = message
    for _ in range(ATTEMPTS):
        if current is None:
            raise NotInInbox(message.message_id)
        if STATUS_RANK[status] <= STATUS_RANK[current.status]:
            return current  # already there or further (dismissed stays dismissed)
        moved = current.model_copy(
            update={"status": status, "answer": answer or current.answer, "updated_at": now}
        )
        if inbox.replace(moved, current.status):
            return moved
        current = inbox.get(message.user_id, message.message_id)
    raise NotInInbox(message.message_id)
