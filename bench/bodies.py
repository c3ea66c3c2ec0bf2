"""Adversarial request bodies through the real ingest handler path, in process: time per KB.

Each body goes through `nudge.entrypoints.http.ingest_api.resolve` as API Gateway hands it to the
ingest function (plain, not gzip: inflating is zlib's, bounded and linear): size limit, the JSON
depth scan, the write key, reading the JSON (its numbers watched), Powertools' routing and
validation, the batch route's per-message checks, the ingest service (checks, identity, fold) and
the answer. Only storage is stood in for: the in-memory usage store, encoding each state it
saves as the DynamoDB adapter does (`adapters.dynamo.codec`), so what a body makes the fold keep is
paid for too. One kind of body per row, at 1, 10, 100 and 500 KB: flat time per KB means no step
costs more than linear time in the body.
"""

from __future__ import annotations

import base64
import gc
import json
import logging
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

from nudge import clock
from nudge.adapters.dynamo import codec
from nudge.adapters.memory import MemoryAccountLedger, MemoryLedger, MemorySegmentStore, MemoryUsageStore
from nudge.adapters.memory.rate_limits import FakeRateCounter
from nudge.bootstrap import api as wiring
from nudge.domain.keys import KeyKind, new_record
from nudge.entrypoints.http import ingest_api, privacy_api
from nudge.model.state import AccountState, RollupDelta, UserState
from nudge.observability import logger, metrics
from nudge.rulebook.plan import load_plan
from nudge.services.auth import ApiKeys
from nudge.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
KB = 1024
SIZES_KB = (1, 10, 100, 500)
NOW = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)
KEY = "bench-bodies-key"
# The largest body's time per KB may be this many times any smaller body's, at most (issue 14).
FLAT = 2.0
# A message of a batch stays under the 32 KB message limit, so it is judged, not refused for size.
CHUNK = 24 * KB


# -- the bodies ----------------------------------------------------------------------------------


def _track(i: int, tag: str, **fields: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "userId": f"{tag}-user",
        "event": "login",
        "messageId": f"{tag}-{i}",
        "timestamp": (NOW - timedelta(hours=1)).isoformat(),
        **fields,
    }


def _batch(target: int, tag: str, message: Callable[[int, int], dict[str, Any]]) -> str:
    """A /v1/batch body of about `target` bytes (never more): messages made by `message(i, room)`
    until the next would not fit; `room` is what the body has left, so a small body gets small
    messages."""
    head, tail = '{"batch": [', "]}"
    parts: list[str] = []
    size = len(head) + len(tail)
    i = 0
    while True:
        room = target - size - 2
        if room < 64:
            break
        text = json.dumps(message(i, room), separators=(",", ":"))
        if size + len(text) + 1 > target:
            break
        parts.append(text)
        size += len(text) + 1
        i += 1
    return head + ",".join(parts) + tail


def _filler(room: int) -> int:
    """Characters of padding for one message with `room` bytes left (its other fields ~150 B)."""
    return max(8, min(CHUNK, room) - 200)


def escaped_quotes(target: int, tag: str) -> str:
    """Strings of escaped quotes (\\"), the text that made the old depth scan backtrack."""
    return _batch(
        target, tag, lambda i, room: _track(i, tag, properties={"note": '"' * (_filler(room) // 2)})
    )


def unclosed_quotes(target: int, tag: str) -> str:
    """One string of escaped quotes that never closes: not JSON (refused), scanned to the end first."""
    head = '{"batch": [{"type": "track", "userId": "u", "event": "login", "properties": {"note": "'
    return head + '\\"' * ((target - len(head)) // 2)


def deep_nesting(target: int, tag: str) -> str:
    """Arrays nested up to the depth limit, nothing but brackets inside."""
    # batch object, batch array, message, properties: 4 levels; 27 more, the empty arrays the last.
    levels = 26

    def message(i: int, room: int) -> dict[str, Any]:
        inner: Any = [[] for _ in range(max(1, _filler(room) // 3))]
        for _ in range(levels):
            inner = [inner]
        return _track(i, tag, properties={"deep": inner})

    return _batch(target, tag, message)


def long_strings(target: int, tag: str) -> str:
    """Long plain strings, one per message."""
    return _batch(target, tag, lambda i, room: _track(i, tag, properties={"text": "x" * _filler(room)}))


def many_keys(target: int, tag: str) -> str:
    """Properties with many small keys."""

    def message(i: int, room: int) -> dict[str, Any]:
        return _track(i, tag, properties={f"k{n}": n for n in range(max(1, _filler(room) // 12))})

    return _batch(target, tag, message)


def many_traits(target: int, tag: str) -> str:
    """Identify calls for one user, each setting many traits (which the user's state keeps)."""

    def message(i: int, room: int) -> dict[str, Any]:
        count = max(1, _filler(room) // 16)
        return {
            "type": "identify",
            "userId": f"{tag}-user",
            "messageId": f"{tag}-{i}",
            "timestamp": (NOW - timedelta(hours=1)).isoformat(),
            "traits": {f"t{i}_{n}": n for n in range(count)},
        }

    return _batch(target, tag, message)


# Small messages take about this many bytes each, so a 500 KB body holds no more than the batch's
# 2,500 messages.
SMALL_MESSAGE = 215


def small_messages_one_user(target: int, tag: str) -> str:
    """Many small meaningful events of one user, 31 minutes apart: each its own session."""

    def message(i: int, room: int) -> dict[str, Any]:
        return {
            "type": "track",
            "userId": f"{tag}-user",
            "event": "project_created",
            "messageId": f"{tag}-{i:05d}",
            "timestamp": (NOW - timedelta(minutes=31 * (i + 1))).isoformat(),
            "context": {"pad": "x" * 60},
        }

    return _batch(target, tag, message)


def small_messages_many_users(target: int, tag: str) -> str:
    """Many small events, each of another user: one state read, folded and written per message."""

    def message(i: int, room: int) -> dict[str, Any]:
        return {
            "type": "track",
            "userId": f"{tag}-user-{i:05d}",
            "event": "project_created",
            "messageId": f"{tag}-{i:05d}",
            "timestamp": (NOW - timedelta(minutes=5)).isoformat(),
            "context": {"pad": "x" * 50},
        }

    return _batch(target, tag, message)


# Python's json reads integers of up to 4,300 digits; each costs time quadratic in its digits.
READABLE_DIGITS = 4300


def big_numbers(target: int, tag: str) -> str:
    """Integers of 4,300 digits (the most Python reads), several per message."""

    def message(i: int, room: int) -> dict[str, Any]:
        count = max(1, _filler(room) // (READABLE_DIGITS + 8))
        digits = min(READABLE_DIGITS, max(20, room - 250))
        return _track(i, tag, properties={f"n{n}": int("7" * digits) for n in range(count)})

    return _batch(target, tag, message)


def _tokens(text: str, placeholder: str, tokens: Sequence[str]) -> str:
    """`text` with each quoted `placeholder` replaced by the next of `tokens` (cycled), padded with
    spaces to the placeholder's length, so the body keeps its size."""
    quoted = f'"{placeholder}"'
    parts = text.split(quoted)
    out = [parts[0]]
    for n, part in enumerate(parts[1:]):
        out.append(tokens[n % len(tokens)].ljust(len(quoted)))
        out.append(part)
    return "".join(out)


def huge_numbers(target: int, tag: str) -> str:
    """Integers of 5,000 digits: more than Python's json reads."""
    digits = 5000

    def message(i: int, room: int) -> dict[str, Any]:
        return _track(i, tag, properties={"n": "H" * (min(digits, room - 250) - 2)})

    text = _batch(target, tag, message)
    return re.sub(r'"(H+)"', lambda m: "9" * (len(m.group(1)) + 2), text)


def non_finite(target: int, tag: str) -> str:
    """NaN, Infinity, -Infinity and 1e400 (read as infinity) wherever a message holds numbers."""

    def message(i: int, room: int) -> dict[str, Any]:
        count = max(1, _filler(room) // 40)
        return _track(i, tag, properties={f"p{n}": "@@@@@@@" for n in range(count)})

    return _tokens(_batch(target, tag, message), "@@@@@@@", ["NaN", "Infinity", "-Infinity", "1e400"])


def plain(target: int, tag: str) -> str:
    """Ordinary messages, for comparison: SDK-shaped tracks of several users."""

    def message(i: int, room: int) -> dict[str, Any]:
        return {
            "type": "track",
            "userId": f"{tag}-user-{i % 50}",
            "event": ("project_created", "login", "report_exported")[i % 3],
            "messageId": f"{tag}-{i:05d}",
            "timestamp": (NOW - timedelta(minutes=i % 600)).isoformat(),
            "properties": {"path": f"/projects/{i}", "title": "Projects"},
            "context": {
                "library": {"name": "analytics-node", "version": "2.1.0"},
                "ip": "10.0.0.1",
                "userAgent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120 Safari/537.36",
                "locale": "en-US",
                "timezone": "Europe/Paris",
            },
        }

    return _batch(target, tag, message)


Builder = Callable[[int, str], str]
PLAIN = "plain SDK-shaped tracks (for comparison)"
KINDS: dict[str, Builder] = {
    PLAIN: plain,
    "escaped quotes": escaped_quotes,
    "unclosed escaped quotes (not JSON)": unclosed_quotes,
    "deep nesting, at the limit": deep_nesting,
    "long strings": long_strings,
    "many keys": many_keys,
    "many traits, one user": many_traits,
    "small messages, one user": small_messages_one_user,
    "small messages, many users": small_messages_many_users,
    "big numbers (4,300 digits)": big_numbers,
    "huge numbers (5,000 digits)": huge_numbers,
    "NaN, Infinity, 1e400": non_finite,
}


# -- the handler, in process ---------------------------------------------------------------------


class EncodingUsageStore(MemoryUsageStore):
    """The in-memory store, encoding what it saves as the DynamoDB adapter does (zlib JSON)."""

    def save_user(
        self,
        state: UserState,
        version: int,
        rollup: RollupDelta | None,
        now: datetime,
        correlation_id: str = "",
        absorbed: Sequence[tuple[str, int]] = (),
    ) -> None:
        codec.encode(state)
        super().save_user(state, version, rollup, now, correlation_id, absorbed)

    def save_account(self, state: AccountState, version: int, now: datetime) -> None:
        codec.encode(state)
        super().save_account(state, version, now)


@dataclass(frozen=True)
class Answer:
    status: int
    accepted: int
    errors: int
    first_error: str
    body_bytes: int  # the answer's size (Lambda may return at most 6 MB)


class Handler:
    """`ingest_api.resolve` with its services on in-memory fakes and a fixed clock."""

    def __init__(self) -> None:
        self.plan = load_plan(ROOT / "rules")
        self.keys = {"bench": new_record("bench", KeyKind.SERVER, KEY, created_at=NOW).to_json()}
        self._current = self.services()

    def current(self) -> wiring.Services:
        """What `services()` answers in the handler while a post runs."""
        return self._current

    def services(self) -> wiring.Services:
        settings = Settings()
        ledger = MemoryLedger()
        return wiring.Services(
            settings=settings,
            plan=self.plan,
            store=EncodingUsageStore(),
            keys=ApiKeys(lambda: self.keys),
            limits=wiring.limits_from(settings),
            rate_counter=FakeRateCounter(),
            user_token_secrets=lambda: (),
            segments=MemorySegmentStore(),
            ledger=ledger,
            accounts=MemoryAccountLedger(ledger),
            unsubscribe_secrets=lambda: (b"s" * 32,),
        )

    def post(self, body: str, times: int = 1, path: str = "/v1/batch") -> tuple[Answer, float]:
        """Post `body` `times` times, each to a fresh store; the last answer and the CPU seconds
        `resolve` took per post."""
        stores = [self.services() for _ in range(times)]
        events = [request(path, body) for _ in range(times)]
        responses = []
        with (
            mock.patch.object(ingest_api, "services", self.current),
            mock.patch.object(privacy_api, "services", self.current),
            clock.installed(lambda: NOW),
        ):
            gc.collect()
            elapsed = 0.0
            for svc, event in zip(stores, events, strict=True):
                self._current = svc
                started = time.process_time()
                responses.append(ingest_api.resolve(event, _Context()))  # type: ignore[arg-type]
                elapsed += time.process_time() - started
                # The handler's decorator would flush them; Powertools prints them past 100 values.
                metrics.clear_metrics()
        answer = json.loads(responses[-1]["body"])
        errors = answer.get("errors") or []
        return (
            Answer(
                responses[-1]["statusCode"],
                answer.get("accepted", 0),
                len(errors),
                errors[0]["message"][:90] if errors else "",
                len(responses[-1]["body"]),
            ),
            elapsed / times,
        )


class _Context:
    function_name = "ingest"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:ingest"
    aws_request_id = "bench"


def request(path: str, body: str) -> dict[str, Any]:
    """An API Gateway HTTP API (v2) event, as the ingest function receives it."""
    return {
        "version": "2.0",
        "routeKey": f"POST {path}",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {
            "content-type": "application/json",
            "authorization": "Basic " + base64.b64encode(f"{KEY}:".encode()).decode(),
        },
        "requestContext": {
            "http": {"method": "POST", "path": path, "protocol": "HTTP/1.1", "sourceIp": "10.0.0.1"},
            "requestId": "r",
            "stage": "$default",
        },
        "body": body,
        "isBase64Encoded": False,
    }


@contextmanager
def quiet() -> Iterator[None]:
    """No log line per request: the bench prints its own figures."""
    level = logger.log_level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


# -- the measurement -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Point:
    size_kb: int
    body_bytes: int
    seconds: float  # CPU seconds, the best of the repeats
    answer: Answer

    @property
    def us_per_kb(self) -> float:
        return self.seconds * 1e6 / (self.body_bytes / KB)


@dataclass(frozen=True)
class Row:
    kind: str
    points: list[Point]

    def ratio(self, larger: int, smaller: int) -> float:
        """Time per KB of the `larger` body over the `smaller` one's (sizes in KB)."""
        by_size = {p.size_kb: p for p in self.points}
        return by_size[larger].us_per_kb / by_size[smaller].us_per_kb

    @property
    def flat(self) -> bool:
        largest = max(p.size_kb for p in self.points)
        return all(self.ratio(largest, p.size_kb) < FLAT for p in self.points)


def measure(
    kinds: dict[str, Builder] = KINDS, sizes_kb: Sequence[int] = SIZES_KB, repeats: int = 3
) -> list[Row]:
    """Every kind at every size, `repeats` times round-robin, the best time kept. A smaller body is
    posted as many times as the largest is larger (500 times at 1 KB), so each timing covers about
    the same work, and the CPU time per post is their mean: one small post is too short to time."""
    handler = Handler()
    bodies = {
        (kind, size): build(size * KB, f"b{n}-{size}")
        for n, (kind, build) in enumerate(kinds.items())
        for size in sizes_kb
    }
    best: dict[tuple[str, int], tuple[float, Answer]] = {}
    with quiet():
        for _ in range(repeats):
            for key, body in bodies.items():
                answer, seconds = handler.post(body, times=max(1, max(sizes_kb) // key[1]))
                if key not in best or seconds < best[key][0]:
                    best[key] = (seconds, answer)
    return [
        Row(
            kind,
            [Point(size, len(bodies[kind, size].encode()), *best[kind, size]) for size in sizes_kb],
        )
        for kind in kinds
    ]
