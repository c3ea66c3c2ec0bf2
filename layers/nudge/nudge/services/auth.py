"""Write keys: HTTP Basic username (Segment's way), Bearer, or the body's `writeKey` (the browser and
mobile SDKs); several live at once for rotation."""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from collections.abc import Callable, Mapping


class Unauthorized(Exception):
    pass


class KeysUnavailable(Exception):
    """The key store could not be read; the request may be retried."""


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The write key a request carries, or None. Header names are matched case-insensitively."""
    value = next((v for k, v in headers.items() if k.lower() == "authorization"), None)
    if not value:
        return None
    scheme, _, credentials = value.strip().partition(" ")
    credentials = credentials.strip()
    if scheme.lower() == "bearer":
        return credentials or None
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[0] or None
    return None


def parse_keys(raw: str) -> list[str]:
    """Keys as stored in the parameter: a JSON list, or comma/newline separated."""
    text = raw.strip()
    if text.startswith("["):
        loaded = json.loads(text)
        return [str(k).strip() for k in loaded if str(k).strip()]
    return [k.strip() for k in text.replace("\n", ",").split(",") if k.strip()]


class WriteKeys:
    def __init__(self, fetch: Callable[[], str]) -> None:
        self._fetch = fetch

    def check(self, headers: Mapping[str, str], body_key: str | None = None) -> None:
        """The request's key (a header's first, else the body's `writeKey`) is live, or raise."""
        key = presented_key(headers) or body_key
        if key is None:
            raise Unauthorized(
                "missing write key: send it as the HTTP Basic username, a Bearer token or the body's writeKey"
            )
        try:
            live = parse_keys(self._fetch())
        except Exception as exc:  # the key store failing must not read as a bad key
            raise KeysUnavailable("write keys could not be read; retry shortly") from exc
        # Compare against every live key, without stopping early, in constant time per key.
        matched = False
        for candidate in live:
            matched |= hmac.compare_digest(candidate.encode(), key.encode())
        if not matched:
            raise Unauthorized("unknown write key: check the key configured in your SDK")
