"""API keys: which key a request carries (HTTP Basic username as Segment's SDKs send it, Bearer, or
the body's `writeKey` from the browser and mobile SDKs), whether it is live, and whether its kind
may do what the request asks. The records and rules are in nudge.domain.keys; this reads them
through a fetch function (bootstrap: the SSM path, cached at most a minute) and never logs a key.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from nudge.domain.keys import (
    KeyRecord,
    KeyRecordError,
    Scope,
    admits,
    kinds_for,
    match_key,
    parse_record,
    preflight_allowed,
)
from nudge.observability import logger, metrics


class Unauthorized(Exception):
    """No key, or not a live one: 401."""


class Forbidden(Exception):
    """A live key that may not do this (its kind, or the page's origin): 403."""


class KeysUnavailable(Exception):
    """The key store could not be read; the request may be retried."""


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key a request's Authorization header carries, or None. Header names match case-insensitively."""
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


@dataclass(frozen=True)
class KeyLoad:
    records: tuple[KeyRecord, ...]
    unreadable: tuple[str, ...]  # problems with records skipped (never the hash or a key)


def load_records(raw: Mapping[str, str]) -> KeyLoad:
    """Records by key id as stored; a bad one is skipped (and reported) so the others still work."""
    records: list[KeyRecord] = []
    problems: list[str] = []
    for key_id, text in sorted(raw.items()):
        try:
            records.append(parse_record(key_id, text))
        except KeyRecordError as exc:
            problems.append(str(exc))
    return KeyLoad(tuple(records), tuple(problems))


class ApiKeys:
    """The live keys, as `fetch` returns them (key id -> stored record)."""

    def __init__(self, fetch: Callable[[], Mapping[str, str]]) -> None:
        self._fetch = fetch

    def load(self) -> KeyLoad:
        try:
            raw = self._fetch()
        except Exception as exc:  # the key store failing must not read as a bad key
            raise KeysUnavailable("keys could not be read; retry shortly") from exc
        loaded = load_records(raw)
        if loaded.unreadable:
            # A bad record is skipped so the other keys work; someone should fix it (its problem
            # names the key id, never the hash or a key).
            logger.warning("key records skipped", extra={"problems": list(loaded.unreadable)})
            metrics.add_metric(name="KeyRecordsUnreadable", unit="Count", value=len(loaded.unreadable))
        return loaded

    def authenticate(self, headers: Mapping[str, str], body_key: str | None = None) -> KeyRecord:
        """The live record of the request's key (a header's first, else the body's), or raise."""
        key = presented_key(headers) or body_key
        if key is None:
            raise Unauthorized(
                "missing write key: send it as the HTTP Basic username, a Bearer token or the body's writeKey"
            )
        record = match_key(self.load().records, key)
        if record is None:
            raise Unauthorized("unknown or revoked key: check the key configured in your SDK")
        return record

    def preflight(self, origin: str) -> bool:
        return preflight_allowed(self.load().records, origin)


def authorize(record: KeyRecord, scope: Scope) -> None:
    """Forbidden unless the key's kind may act in `scope`; the message names the kind needed."""
    if not admits(scope, record.kind):
        raise Forbidden(
            f"a {record.kind.value} key may not do this: it needs a {kinds_for(scope)} key"
            + (" (admin keys administer; they do not send events)" if scope is Scope.INGEST else "")
        )
