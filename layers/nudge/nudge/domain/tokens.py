"""Signed unsubscribe tokens: what the link in an email's footer and List-Unsubscribe carries.

Format: v1.<payload>.<signature>, both URL-safe base64 without padding. The payload is the
compact JSON array [user_id, scope, issued_at_unix_seconds] or, for a message sent to an address,
[user_id, scope, issued_at_unix_seconds, address_key] (the address's keyed hash on the suppression
list, nudge.domain.suppression: not the address); the signature is HMAC-SHA256 over "v1.<payload>"
with the first secret. Several secrets are accepted on reading, so a secret can be rotated without
breaking the links already in people's inboxes: put the new one first, and keep the old one as long
as its links should work.

A genuine token never expires: it is proof that its user got the message, and an unsubscribe must
work however old the message is (CAN-SPAM asks for at least 30 days; nothing is gained by refusing
later). Only a token that is malformed or not signed by us is refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

VERSION = "v1"
MIN_SECRET_BYTES = 16
# Real tokens are ~100 chars; refuse absurd input before doing any work on it.
MAX_TOKEN_CHARS = 2048

_B64URL = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass(frozen=True)
class UnsubscribeClaim:
    user_id: str
    scope: str  # a channel or topic: "email", "email:marketing", "sms"
    issued_at: datetime
    # The keyed hash of the address the message went to (None: a token made before it was carried).
    address_key: str | None = None


class TokenError(Exception):
    """The token cannot be honoured. Messages never quote the token or a secret."""


class TokenInvalid(TokenError):
    """Malformed, or not signed by any of our secrets (tampered, or made by someone else)."""


def parse_secrets(raw: str) -> tuple[bytes, ...]:
    """Secrets as the parameter stores them: comma-separated, the signing one first."""
    return tuple(s.strip().encode() for s in raw.split(",") if s.strip())


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    if not _B64URL.match(text):
        raise TokenInvalid("unsubscribe token is malformed")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise TokenInvalid("unsubscribe token is malformed") from exc
    # Base64's last character has spare bits: several spellings decode to the same bytes.
    # Accept only the one we write, so each claim has exactly one valid token.
    if _b64encode(data) != text:
        raise TokenInvalid("unsubscribe token is malformed")
    return data


def _secrets(secret: bytes | Sequence[bytes]) -> list[bytes]:
    # bytes is itself a Sequence (of ints): test for it first.
    secrets = [secret] if isinstance(secret, bytes) else list(secret)
    if not secrets or any(len(s) < MIN_SECRET_BYTES for s in secrets):
        raise ValueError(f"unsubscribe secrets must be at least {MIN_SECRET_BYTES} bytes each")
    return secrets


def _sign(secret: bytes, signed: str) -> bytes:
    return hmac.new(secret, signed.encode("ascii"), hashlib.sha256).digest()


def make_token(
    secret: bytes | Sequence[bytes],
    user_id: str,
    scope: str,
    issued_at: datetime,
    address_key: str | None = None,
) -> str:
    """A token for `user_id` leaving `scope`, signed with `secret` (or the first of several);
    `address_key` names the address the message went to on the suppression list."""
    if not user_id or not scope:
        raise ValueError("user_id and scope must not be empty")
    if issued_at.tzinfo is None:
        raise ValueError("issued_at must be timezone-aware")
    fields: list[str | int] = [user_id, scope, int(issued_at.timestamp())]
    if address_key is not None:
        if not address_key:
            raise ValueError("address_key must not be empty")
        fields.append(address_key)
    body = json.dumps(fields, separators=(",", ":"))
    signed = f"{VERSION}.{_b64encode(body.encode('utf-8'))}"
    return f"{signed}.{_b64encode(_sign(_secrets(secret)[0], signed))}"


def read_token(secret: bytes | Sequence[bytes], token: str) -> UnsubscribeClaim:
    """The claim in `token` if one of `secret` signed it, however old; TokenInvalid if not."""
    secrets = _secrets(secret)
    if len(token) > MAX_TOKEN_CHARS or token.count(".") != 2:
        raise TokenInvalid("unsubscribe token is malformed")
    version, payload, signature = token.split(".")
    if version != VERSION:
        raise TokenInvalid("unsubscribe token has an unknown version")
    given = _b64decode(signature)
    signed = f"{version}.{payload}"
    # compare_digest against every secret (no early exit on a match), so timing says nothing.
    matches = [hmac.compare_digest(_sign(s, signed), given) for s in secrets]
    if not any(matches):
        raise TokenInvalid("unsubscribe token signature does not match")
    try:
        fields = json.loads(_b64decode(payload))
    except (UnicodeDecodeError, ValueError) as exc:
        raise TokenInvalid("unsubscribe token is malformed") from exc
    address_key: str | None = None
    match fields:
        case [str(user_id), str(scope), int(seconds)] if user_id and scope:
            pass
        case [str(user_id), str(scope), int(seconds), str(address_key)] if user_id and scope and address_key:
            pass
        case _:
            raise TokenInvalid("unsubscribe token is malformed")
    try:
        issued_at = datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise TokenInvalid("unsubscribe token is malformed") from exc
    return UnsubscribeClaim(user_id, scope, issued_at, address_key)
