"""The in-app channel, pure: the inbox token a user's page presents, the onboarding checklist,
what a survey answer must be, and a rendered message made an inbox message.

The inbox token. The product's server signs, for a signed-in user, `<u>.<exp>.<sig>`:

    u    the user id, base64url without padding (any id fits a header and a query string)
    exp  when the token stops working, in Unix seconds
    sig  hex HMAC-SHA256 of `<u>.<exp>` under the *inbox key*, HMAC-SHA256("nudge inbox token v1")
         under the user-token secret (/nudge/<stage>/user-token-secret)

Why an expiry and not the bare user token (HMAC of the user id): the bare token never changes, so
one read off a page or a log opens that user's inbox forever. A token expiring within
INBOX_TOKEN_MAX_LIFETIME_SECONDS (a later expiry is refused, whatever signed it) bounds a replay to
that window, with no state to keep (a nonce would need a table written on every read). Why a
derived key: a bare token for the user id `alice.1765000000` would otherwise be a valid signature
for `alice` until that time; under a key of its own an inbox signature is never a bare token.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from nudge.model.inapp import Checklist, ChecklistItem, InAppMessage, Survey
from nudge.model.limits import INBOX_TOKEN_MAX_LIFETIME_SECONDS, SURVEY_ANSWER_CHARS

INBOX_KEY_LABEL = b"nudge inbox token v1"
MAX_INBOX_TOKEN_CHARS = 512


class TokenRefused(ValueError):
    """The inbox token does not open an inbox; the message says why and what to do (never the id)."""


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode("utf-8")).decode("ascii").rstrip("=")


def _unb64(part: str) -> str:
    padded = part + "=" * (-len(part) % 4)
    return base64.urlsafe_b64decode(padded.encode("ascii")).decode("utf-8")


def inbox_key(secret: bytes) -> bytes:
    return hmac.new(secret, INBOX_KEY_LABEL, hashlib.sha256).digest()


def inbox_token(secret: bytes, user_id: str, expires: datetime) -> str:
    """What the product's server hands its page for `user_id`: valid until `expires`."""
    signed = f"{_b64(user_id)}.{int(expires.timestamp())}"
    sig = hmac.new(inbox_key(secret), signed.encode("ascii"), hashlib.sha256).hexdigest()
    return f"{signed}.{sig}"


def verify_inbox_token(secrets: Sequence[bytes], token: str | None, now: datetime) -> str:
    """The user id `token` opens the inbox of, or TokenRefused: malformed, badly signed (under
    every live secret, each compared in constant time), expired, or expiring too far ahead."""
    if not token:
        raise TokenRefused(
            "no user token: send X-Nudge-User-Token, signed by your server for the signed-in user"
        )
    parts = token.strip().split(".")
    if len(token) > MAX_INBOX_TOKEN_CHARS or len(parts) != 3 or not parts[1].isdigit():
        raise TokenRefused("the user token is not <user>.<expiry>.<signature>; sign it as the README says")
    u, exp, sig = parts
    signed = f"{u}.{exp}".encode("ascii", "replace")
    presented = sig.lower().encode("ascii", "replace")
    ok = False
    for secret in secrets:
        expected = hmac.new(inbox_key(secret), signed, hashlib.sha256).hexdigest().encode("ascii")
        ok |= hmac.compare_digest(expected, presented)
    if not ok:
        raise TokenRefused("the user token's signature does not match; sign it with the user-token secret")
    expires = int(exp)
    if expires <= now.timestamp():
        raise TokenRefused("the user token has expired; fetch a fresh one from your server")
    if expires > now.timestamp() + INBOX_TOKEN_MAX_LIFETIME_SECONDS:
        raise TokenRefused(
            f"the user token expires more than {INBOX_TOKEN_MAX_LIFETIME_SECONDS // 3600}h ahead; "
            "sign a shorter-lived one"
        )
    try:
        user_id = _unb64(u)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise TokenRefused("the user token's user part is not base64url of the user id") from None
    if not user_id:
        raise TokenRefused("the user token names no user")
    return user_id


def checklist(milestones: Mapping[str, object], reached: Mapping[str, datetime]) -> Checklist:
    """The user's onboarding checklist: each milestone in the file's order, done or not; `next` the
    first not done. `milestones` maps name -> its spec (anything with a `description`)."""
    items = [
        ChecklistItem(
            milestone=name,
            description=str(getattr(spec, "description", "") or name),
            done=name in reached,
            done_at=reached.get(name),
        )
        for name, spec in milestones.items()
    ]
    done = sum(1 for item in items if item.done)
    total = len(items)
    return Checklist(
        items=items,
        next=next((item.milestone for item in items if not item.done), None),
        done=done,
        total=total,
        progress=round(done / total, 4) if total else 1.0,
    )


def answer_problem(
    message: InAppMessage | None, user_id: str, answer: object, now: datetime
) -> tuple[str, str] | None:
    """(field, why) this answer cannot be taken, or None: no such message for the user, not a
    survey, expired, already answered (field `messageId`), or an answer the survey does not offer
    (field `answer`)."""
    if message is None or message.user_id != user_id:
        return "messageId", "no such message in this user's inbox (expired, erased, or another user's)"
    survey = message.survey
    if survey is None:
        return "messageId", "this message is not a survey"
    if not message.live(now):
        return "messageId", "this survey has expired"
    if message.status == "answered":
        return "messageId", "this survey was answered already"
    if not isinstance(answer, str) or not answer.strip():
        return "answer", "answer must be non-empty text"
    if answer in survey.choices:
        return None
    if not survey.free_text:
        return "answer", f"answer must be one of: {', '.join(survey.choices)}"
    if len(answer) > SURVEY_ANSWER_CHARS:
        return "answer", f"answer is over {SURVEY_ANSWER_CHARS} characters; shorten it"
    return None


def in_app_message(
    *,
    message_id: str,
    user_id: str,
    rule: str,
    title: str,
    body: str,
    link: str | None,
    survey: Survey | None,
    expires_after: timedelta,
    now: datetime,
) -> InAppMessage:
    return InAppMessage(
        message_id=message_id,
        user_id=user_id,
        rule=rule,
        title=title,
        body=body,
        link=link or None,
        survey=survey,
        created_at=now,
        expires_at=now + expires_after,
    )


def safe_link(link: str) -> str | None:
    """A message's link if a page may follow it: http(s) only (a `javascript:` link in a button
    would run in the product's page)."""
    text = link.strip()
    return text if text.lower().startswith(("https://", "http://")) else None
