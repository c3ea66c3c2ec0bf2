"""The benchmark's input: the sample product's history, cut into SDK-sized /v1/batch bodies."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

# The sample history the benchmarks replay (nudge.tools.samples.generator).
USERS = 1_000
ACCOUNTS = 100
DAYS = 90
SEED = 7
START = datetime(2025, 1, 6, tzinfo=UTC)
# Segment's SDKs flush every 100 messages (or every few seconds).
BATCH_SIZE = 100
# An SDK posts a batch a few seconds after its last message.
FLUSH_DELAY = timedelta(seconds=10)
# One user in ANONYMOUS_SHARE browses before signing up, as a browser SDK reports it: their calls
# before identify carry only an anonymousId, identify carries both ids (ingest merges the two
# profiles), and every call after it both ids too.
ANONYMOUS_SHARE = 3


@dataclass(frozen=True)
class Body:
    """One /v1/batch request body as the SDK sends it, and when it reaches the API."""

    json: str
    messages: int
    received: datetime


def sample_messages(limit: int) -> list[dict[str, Any]]:
    """The first `limit` messages of the sample history, in time order."""
    from nudge.tools.samples.generator import generate

    stream: Iterable[dict[str, Any]] = generate(
        users=USERS, accounts=ACCOUNTS, days=DAYS, seed=SEED, start=START
    )
    return with_anonymous_visits(list(itertools.islice(stream, limit)))


def with_anonymous_visits(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages, with every ANONYMOUS_SHARE-th user (by first appearance) anonymous until
    their first identify, then known by both ids: identity merges in the mix."""
    order: dict[str, int] = {}
    identified: set[str] = set()
    out: list[dict[str, Any]] = []
    for message in messages:
        user = message.get("userId")
        if not user:
            out.append(message)
            continue
        if order.setdefault(user, len(order)) % ANONYMOUS_SHARE:
            out.append(message)
            continue
        changed = {**message, "anonymousId": f"device-{user}"}
        if message["type"] == "identify":
            identified.add(user)
        elif user not in identified:
            del changed["userId"]
        out.append(changed)
    return out


def batches(messages: list[dict[str, Any]], size: int = BATCH_SIZE) -> list[Body]:
    return list(_bodies(messages, size))


def _bodies(messages: list[dict[str, Any]], size: int) -> Iterator[Body]:
    for start in range(0, len(messages), size):
        chunk = messages[start : start + size]
        last = max(_timestamp(m) for m in chunk)
        sent_at = last + FLUSH_DELAY
        body = {"batch": chunk, "sentAt": sent_at.isoformat()}
        yield Body(json.dumps(body, default=str), len(chunk), sent_at)


def _timestamp(message: dict[str, Any]) -> datetime:
    value = message["timestamp"]
    stamp = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)
