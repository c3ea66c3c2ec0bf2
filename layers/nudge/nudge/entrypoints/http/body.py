"""Request bodies before routing: size limits and gzip (as SDKs send it), decompressed safely; the
write key some SDKs put in the body; the body declared as the JSON it is."""

from __future__ import annotations

import base64
import binascii
import json
import re
import zlib
from typing import Any

from nudge.model.numbers import NumberWatch, spare_walks

# JSON deeper than this is refused before parsing. Deeper bodies crash json.loads (RecursionError,
# ~1,000 levels), json.dumps and pydantic (~200), and a deep trait once stored would make the
# user's state unreadable for good. Real properties, traits and context nest a few levels.
MAX_JSON_DEPTH = 32
# The characters that matter to the depth: quotes, escapes, brackets. A plain character class, so
# finding them is one linear pass whatever the body (a regex for whole strings backtracked on
# unclosed ones: quadratic, a 16 KB body of escaped quotes took seconds).
_STRUCTURE = re.compile(r'["\\\[\]{}]')


class BodyError(Exception):
    def __init__(self, status: int, field: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.field = field
        self.message = message


def header(event: dict[str, Any], name: str) -> str | None:
    headers = event.get("headers") or {}
    return next((v for k, v in headers.items() if k.lower() == name), None)


def normalize(event: dict[str, Any], limit: int) -> dict[str, Any]:
    """Return an event whose body is plain text of at most `limit` bytes, or raise BodyError.

    A gzip body is inflated with a hard cap, so a small bomb can't grow past the limit in memory.
    """
    body = event.get("body")
    if body is None:
        return event
    raw: bytes
    if event.get("isBase64Encoded"):
        try:
            raw = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise BodyError(400, "body", "body is marked base64 but is not valid base64") from exc
    else:
        raw = body.encode("utf-8")
    encoding = (header(event, "content-encoding") or "identity").strip().lower()
    if encoding == "gzip":
        raw = _gunzip(raw, limit)
    elif encoding not in ("identity", ""):
        raise BodyError(
            415, "content-encoding", f"content-encoding '{encoding}' is not supported; send gzip or none"
        )
    if len(raw) > limit:
        raise BodyError(
            413, "body", f"body is {len(raw)} bytes; the limit is {limit} bytes: send smaller batches"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BodyError(
            400, "body", f"body is not UTF-8 (invalid byte at offset {exc.start}); send UTF-8 JSON"
        ) from exc
    depth = json_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise BodyError(
            400,
            "body",
            f"JSON nests {depth} levels deep; the limit is {MAX_JSON_DEPTH}: "
            "flatten properties, traits or context",
        )
    headers = {k: v for k, v in (event.get("headers") or {}).items() if k.lower() != "content-encoding"}
    return {**event, "body": text, "isBase64Encoded": False, "headers": headers}


def _gunzip(raw: bytes, limit: int) -> bytes:
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(raw, limit + 1)
    except zlib.error as exc:
        raise BodyError(400, "body", "content-encoding is gzip but the body is not valid gzip") from exc
    if len(out) > limit or inflater.unconsumed_tail:
        raise BodyError(413, "body", f"body inflates past the limit of {limit} bytes: send smaller batches")
    if not inflater.eof:
        raise BodyError(400, "body", "gzip body is truncated")
    return out


def json_depth(text: str) -> int:
    """How deep objects and arrays nest in `text`, without parsing it (brackets in strings skipped).
    One pass over the structural characters: linear in the body, whatever it holds."""
    depth = deepest = 0
    in_string = False
    escaped_at = -1  # the index of the character a backslash escapes
    for found in _STRUCTURE.finditer(text):
        at, char = found.start(), found.group()
        if at == escaped_at:
            continue
        if in_string:
            if char == "\\":
                escaped_at = at + 1
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def load_json(text: str | bytes) -> Any:
    """JSON as Python's json reads it, its numbers watched (nudge.model.numbers.NumberWatch): an
    integer too long for Python is read past the safe range (its message is refused, not the body),
    and within a request the messages read are spared the numbers walk when no number in the body
    could break the rules."""
    watch = NumberWatch()
    value = json.loads(
        text, parse_int=watch.read_int, parse_float=watch.read_float, parse_constant=watch.read_constant
    )
    spare_walks(watch)
    return value


def take_body_key(event: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """The body's `writeKey` (where the browser and mobile SDKs put it) and the event without it,
    so the key goes no further than the check. Only parsed when the text names one."""
    body = event.get("body")
    if not body or '"writeKey"' not in body:
        return event, None
    try:
        parsed = load_json(body)
    except ValueError:
        return event, None  # routing reports the bad JSON
    if not isinstance(parsed, dict) or not isinstance(parsed.get("writeKey"), str):
        return event, None
    key = parsed.pop("writeKey")
    return {**event, "body": json.dumps(parsed, ensure_ascii=False)}, key or None


def as_json(event: dict[str, Any]) -> dict[str, Any]:
    """The event with its body declared `application/json`, whatever the client declared."""
    headers = {k: v for k, v in (event.get("headers") or {}).items() if k.lower() != "content-type"}
    return {**event, "headers": {**headers, "content-type": "application/json"}}
