"""API keys and what each kind may do: records as stored, matching a presented key, scopes, origins,
user tokens and the sensitive fields a client key may not set alone. Pure: no AWS, no clock.

A key is high-entropy random text (`secrets.token_urlsafe(32)` from `nudge keys create`), so its
SHA-256 is all that needs storing: no salt or slow hash is needed against a guess of 256 random
bits, and the stored record is useless to whoever reads it. Kinds:

- `client`: browsers and apps, public by nature. Ingest only; sensitive traits need a user token;
  answered with CORS for the origins its owner listed; rate limited per key.
- `server`: the product's back end. All ingest.
- `admin`: erasure, export, administration. Never ingest: an admin key in an SDK would be a key
  that can erase users sitting in a config file.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit


class KeyKind(StrEnum):
    CLIENT = "client"
    SERVER = "server"
    ADMIN = "admin"


class Scope(StrEnum):
    INGEST = "ingest"  # tracking routes and the SDK settings document
    ADMIN = "admin"  # erasure, export


# Which kinds a scope admits. Admin keys administer and ingest keys ingest, never both.
ALLOWED: Mapping[Scope, frozenset[KeyKind]] = {
    Scope.INGEST: frozenset({KeyKind.CLIENT, KeyKind.SERVER}),
    Scope.ADMIN: frozenset({KeyKind.ADMIN}),
}

ANY_ORIGIN = "*"
# Client keys' default budget: messages per second, averaged over the limiter's window. One key is
# shared by every browser of the product, so this is the product's whole front-end traffic.
DEFAULT_RATE_LIMIT = 100
KEY_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
# The user-token field a message carries in its context (analytics-next puts unknown call options
# there too: `analytics.identify(id, traits, {userToken})` arrives as context.userToken).
USER_TOKEN_FIELD = "userToken"  # noqa: S105 - a field name


class KeyRecordError(ValueError):
    """A stored key record that cannot be read (it is skipped; the rest still work)."""


@dataclass(frozen=True)
class KeyRecord:
    key_id: str
    kind: KeyKind
    sha256: str  # hex digest of the key; the key itself is never stored
    origins: tuple[str, ...] = ()
    rate_limit: int | None = None  # client keys: messages per second; None: the default
    label: str = ""
    created_at: str = ""

    def to_json(self) -> str:
        return json.dumps(
            {
                "kind": self.kind.value,
                "sha256": self.sha256,
                "origins": list(self.origins),
                "rate_limit": self.rate_limit,
                "label": self.label,
                "created_at": self.created_at,
            },
            separators=(",", ":"),
        )

    @property
    def limit(self) -> int:
        return self.rate_limit if self.rate_limit is not None else DEFAULT_RATE_LIMIT


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_record(
    key_id: str,
    kind: KeyKind,
    key: str,
    *,
    created_at: datetime,
    origins: Sequence[str] = (),
    rate_limit: int | None = None,
    label: str = "",
) -> KeyRecord:
    """The record stored for `key` (checked as `parse_record` would check it when read)."""
    record = KeyRecord(
        key_id=key_id,
        kind=kind,
        sha256=hash_key(key),
        origins=tuple(normalize_origin(o) for o in origins),
        rate_limit=rate_limit,
        label=label,
        created_at=created_at.isoformat(),
    )
    return parse_record(key_id, record.to_json())


def parse_record(key_id: str, raw: str) -> KeyRecord:
    """A record as stored (JSON); KeyRecordError names what is wrong, never quoting the hash."""
    if not KEY_ID.match(key_id):
        raise KeyRecordError(f"key id {key_id!r} is not 1-64 letters, digits, '.', '_' or '-'")
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise KeyRecordError(f"key {key_id}: not JSON") from exc
    if not isinstance(data, dict):
        raise KeyRecordError(f"key {key_id}: not a JSON object")
    try:
        kind = KeyKind(str(data.get("kind")))
    except ValueError as exc:
        raise KeyRecordError(f"key {key_id}: kind must be client, server or admin") from exc
    digest = data.get("sha256")
    if not isinstance(digest, str) or not _HEX64.match(digest):
        raise KeyRecordError(f"key {key_id}: sha256 must be 64 lowercase hex digits")
    origins = data.get("origins") or []
    if not isinstance(origins, list) or not all(isinstance(o, str) for o in origins):
        raise KeyRecordError(f"key {key_id}: origins must be a list of URLs")
    rate_limit = data.get("rate_limit")
    if rate_limit is not None and (not isinstance(rate_limit, int) or rate_limit < 1):
        raise KeyRecordError(f"key {key_id}: rate_limit must be a positive whole number")
    return KeyRecord(
        key_id=key_id,
        kind=kind,
        sha256=digest,
        origins=tuple(normalize_origin(o) for o in origins),
        rate_limit=rate_limit,
        label=str(data.get("label") or ""),
        created_at=str(data.get("created_at") or ""),
    )


def normalize_origin(origin: str) -> str:
    """An origin as browsers send it: scheme://host[:port], lowercase, no path; or `*`."""
    text = origin.strip()
    if text == ANY_ORIGIN:
        return text
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
        raise KeyRecordError(f"origin {origin!r} is not scheme://host[:port] (e.g. https://app.example.com)")
    return f"{parts.scheme}://{parts.netloc}".lower()


def match_key(records: Iterable[KeyRecord], presented: str) -> KeyRecord | None:
    """The record of `presented`, comparing its hash with every record's in constant time and
    without stopping at the first match, so timing says nothing about which keys exist."""
    digest = hash_key(presented).encode("ascii")
    found: KeyRecord | None = None
    for record in records:
        if hmac.compare_digest(record.sha256.encode("ascii"), digest):
            found = record
    return found


def admits(scope: Scope, kind: KeyKind) -> bool:
    return kind in ALLOWED[scope]


def kinds_for(scope: Scope) -> str:
    """The kinds a scope takes, for messages: 'admin', 'client or server'."""
    return " or ".join(sorted(k.value for k in ALLOWED[scope]))


def origin_allowed(record: KeyRecord, origin: str) -> bool:
    """Whether a page at `origin` may use this key. Only client keys are ever granted: a server or
    admin key used from a page is a leaked key, and refusing it there makes the leak loud."""
    if record.kind is not KeyKind.CLIENT:
        return False
    try:
        wanted = normalize_origin(origin)
    except KeyRecordError:
        return False
    return ANY_ORIGIN in record.origins or wanted in record.origins


def preflight_allowed(records: Iterable[KeyRecord], origin: str) -> bool:
    """A preflight carries no key: grant it when some live client key allows the origin (the
    request that follows is judged by its own key)."""
    return any(origin_allowed(r, origin) for r in records)


def user_token(secret: bytes, user_id: str) -> str:
    """What the product's server computes for a signed-in user: hex HMAC-SHA256 of the user id."""
    return hmac.new(secret, user_id.encode("utf-8"), hashlib.sha256).hexdigest()


def valid_user_token(secrets: Sequence[bytes], user_id: str | None, token: Any) -> bool:
    """Whether `token` is `user_id`'s under any live secret (several: rotation), in constant time."""
    if not user_id or not isinstance(token, str) or not token:
        return False
    presented = token.strip().lower().encode("ascii", "replace")
    ok = False
    for secret in secrets:
        ok |= hmac.compare_digest(user_token(secret, user_id).encode("ascii"), presented)
    return ok


@dataclass(frozen=True)
class Stripped:
    values: dict[str, Any]
    dropped: list[str] = field(default_factory=list)  # the names taken out, in the values' order


def strip_fields(values: Mapping[str, Any], sensitive: frozenset[str]) -> Stripped:
    """`values` without the sensitive names (traits now; event properties later, same call)."""
    kept = {k: v for k, v in values.items() if k not in sensitive}
    return Stripped(kept, [k for k in values if k in sensitive])
