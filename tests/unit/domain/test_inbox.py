"""The in-app channel's pure parts: the inbox token, the checklist, what a survey answer must be."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import pytest

from nudge.domain.inbox import (
    TokenRefused,
    answer_problem,
    checklist,
    inbox_token,
    safe_link,
    verify_inbox_token,
)
from nudge.domain.keys import user_token
from nudge.model.inapp import InAppMessage, Survey
from nudge.rulebook.plan import MilestoneSpec

NOW = datetime(2026, 6, 17, 12, 0, tzinfo=UTC)
SECRET = b"user-token-secret-for-tests-0123"
OTHER = b"another-secret-nobody-signs-with"


def test_a_token_signed_for_a_user_opens_that_users_inbox_until_it_expires() -> None:
    token = inbox_token(SECRET, "user.with.dots@example.com", NOW + timedelta(hours=1))
    assert verify_inbox_token([OTHER, SECRET], token, NOW) == "user.with.dots@example.com"
    with pytest.raises(TokenRefused, match="expired"):
        verify_inbox_token([SECRET], token, NOW + timedelta(hours=1))


@pytest.mark.parametrize(
    "forge",
    [
        lambda t: t[:-1] + ("0" if t[-1] != "0" else "1"),  # one hex digit of the signature
        lambda t: "Ym9i" + t[t.index(".") :],  # another user (bob) with alice's signature
        lambda t: t.rsplit(".", 2)[0] + "." + str(int(t.rsplit(".", 2)[1]) + 60) + "." + t.rsplit(".", 2)[2],
        lambda t: inbox_token(OTHER, "alice", NOW + timedelta(hours=1)),  # another secret
        lambda t: "garbage",
        lambda t: "",
    ],
    ids=["signature", "user", "expiry", "secret", "shape", "empty"],
)
def test_a_forged_token_is_refused(forge: object) -> None:
    token = inbox_token(SECRET, "alice", NOW + timedelta(hours=1))
    with pytest.raises(TokenRefused):
        verify_inbox_token([SECRET], forge(token), NOW)  # type: ignore[operator]


def test_a_token_expiring_more_than_a_day_ahead_is_refused_whatever_signed_it() -> None:
    # A token that outlives a day would be a replayable credential in all but name.
    token = inbox_token(SECRET, "alice", NOW + timedelta(days=30))
    with pytest.raises(TokenRefused, match="24h"):
        verify_inbox_token([SECRET], token, NOW)


def test_the_bare_identity_token_is_never_an_inbox_token() -> None:
    # Given the identity-verification token (HMAC of the user id, no expiry) of a user whose id
    # looks like `<b64 user>.<expiry>`: as an inbox signature under the plain secret it would open
    # alice's inbox. The inbox key is derived, so it does not.
    expiry = int((NOW + timedelta(hours=1)).timestamp())
    crafted_id = f"YWxpY2U.{expiry}"  # base64url("alice").<expiry>
    bare = user_token(SECRET, crafted_id)
    assert bare == hmac.new(SECRET, crafted_id.encode(), hashlib.sha256).hexdigest()
    with pytest.raises(TokenRefused, match="signature"):
        verify_inbox_token([SECRET], f"{crafted_id}.{bare}", NOW)


def test_the_checklist_follows_the_milestones_in_order_with_the_next_one_named() -> None:
    milestones = {
        "setup_done": MilestoneSpec(description="Finish setup", all=["setup_completed"]),
        "first_project": MilestoneSpec(description="Create a project", all=["project_created"]),
        "first_invite": MilestoneSpec(description="Invite a teammate", all=["teammate_invited"]),
    }
    found = checklist(milestones, {"first_project": NOW})
    assert [(i.milestone, i.done) for i in found.items] == [
        ("setup_done", False),
        ("first_project", True),
        ("first_invite", False),
    ]
    assert (found.next, found.done, found.total) == ("setup_done", 1, 3)
    assert found.progress == pytest.approx(1 / 3, abs=1e-4)
    everything = checklist(milestones, dict.fromkeys(milestones, NOW))
    assert (everything.next, everything.progress) == (None, 1.0)


def _survey(free_text: bool = False, **changes: object) -> InAppMessage:
    message = InAppMessage(
        message_id="m1",
        user_id="alice",
        rule="ask",
        title="Quick question",
        body="Why?",
        survey=Survey(
            question="Why?", choices=["no time", "too complicated"], free_text=free_text, property="blocker"
        ),
        created_at=NOW - timedelta(days=1),
        expires_at=NOW + timedelta(days=1),
    )
    return message.model_copy(update=changes)


@pytest.mark.parametrize(
    ("message", "user", "answer", "field", "says"),
    [
        (None, "alice", "no time", "messageId", "no such message"),
        (_survey(), "bob", "no time", "messageId", "no such message"),
        (_survey(survey=None), "alice", "no time", "messageId", "not a survey"),
        (_survey(expires_at=NOW), "alice", "no time", "messageId", "expired"),
        (_survey(status="answered"), "alice", "no time", "messageId", "answered already"),
        (_survey(), "alice", "bored", "answer", "one of: no time, too complicated"),
        (_survey(free_text=True), "alice", "x" * 101, "answer", "over 100"),
        (_survey(), "alice", " ", "answer", "non-empty"),
    ],
    ids=["missing", "foreign", "not-survey", "expired", "answered", "not-a-choice", "too-long", "blank"],
)
def test_an_answer_that_cannot_be_taken_names_why(
    message: InAppMessage | None, user: str, answer: str, field: str, says: str
) -> None:
    problem = answer_problem(message, user, answer, NOW)
    assert problem is not None
    assert problem[0] == field
    assert says in problem[1]


def test_a_choice_or_free_text_is_taken() -> None:
    assert answer_problem(_survey(), "alice", "no time", NOW) is None
    assert answer_problem(_survey(free_text=True), "alice", "our CI is weird", NOW) is None


def test_only_web_links_are_kept() -> None:
    assert safe_link(" https://app.example/setup ") == "https://app.example/setup"
    assert safe_link("javascript:alert(1)") is None
    assert safe_link("") is None
