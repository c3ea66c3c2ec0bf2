"""The buffered front door: a request's messages are checked and answered at once, then folded
later, many requests together, by the ingest queue's consumer with the same ingest service.

    enqueue (front door, per request): screen as ever (entrypoints), `admit` (the same checks,
        dedupe key and timestamp pinned), pack the admitted messages into queue bodies, put them;
        the answer (200, or 400 naming each refused message) is the one `ingest` would give for
        what a request alone can show.
    drain (queue consumer, per batch of queue messages): unpack, then `store_admitted`: one
        versioned write per user per batch however many requests its messages came in.

What only the stored state can show (an alias that would make a cycle, a profile or an account
with no room left) is found when the batch is folded, after the 200: those messages are refused
then, logged by index and field (never values) and counted (`BufferedRefused`). A redelivered
queue message folds to nothing new: its messages carry the dedupe keys pinned at the front door.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import accumulate
from typing import Any

from pydantic import TypeAdapter

from nudge.model.errors import StoreUnavailable
from nudge.model.limits import (
    INGEST_QUEUE_BODY_BYTES,
    INGEST_QUEUE_MARGIN_SECONDS,
    INGEST_QUEUE_OUTAGE_BODIES,
)
from nudge.model.messages import Alias, Message
from nudge.observability import logger
from nudge.ports import IngestBuffer, UsageStore
from nudge.rulebook.plan import TrackingPlan
from nudge.services.ingest import Contention, IngestLimits, IngestResult, admit, store_admitted

# Bumped when the body's shape changes, so a consumer can tell an old body from a new one.
BODY_VERSION = 1
_MESSAGE: TypeAdapter[Message] = TypeAdapter(Message)
DEFAULT_LIMITS = IngestLimits()


class BadQueueBody(ValueError):
    """A queue body this consumer cannot read (a bug or another writer): never folded, never lost:
    the queue retries it, then keeps it in its DLQ."""


def enqueue(
    messages: Sequence[tuple[int, Message]],
    plan: TrackingPlan,
    buffer: IngestBuffer,
    now: datetime,
    limits: IngestLimits = DEFAULT_LIMITS,
    request_id: str = "",
) -> IngestResult:
    """Check the messages as `ingest` would and put the acceptable ones on the queue; `accepted`
    counts what was queued. Raises StoreUnavailable (nothing answered 200) if the queue refuses."""
    result = IngestResult()
    admitted = admit(messages, plan, now, limits, result)
    if admitted:
        buffer.put(pack([m for _, m in admitted], request_id))
    result.accepted = len(admitted)
    return result


def pack(messages: Sequence[Message], request_id: str, limit: int = INGEST_QUEUE_BODY_BYTES) -> list[str]:
    """Queue bodies holding the messages, in order, each under `limit` bytes (one message is at most
    32 KB, so each fits). An alias keeps whether it came with a client key (no pydantic field)."""
    bodies: list[str] = []
    entries: list[str] = []
    size = 0
    for message in messages:
        # Unset stays unset (the fold reads which traits a message set); the type always goes.
        fields = message.model_dump(mode="json", exclude_unset=True)
        fields["type"] = message.type
        wrapped: dict[str, Any] = {"message": fields}
        if isinstance(message, Alias) and message.anonymous_only:
            wrapped["anonymous_only"] = True
        entry = json.dumps(wrapped, separators=(",", ":"), ensure_ascii=False)
        if entries and size + len(entry.encode()) + 64 > limit:
            bodies.append(_body(entries, request_id))
            entries, size = [], 0
        entries.append(entry)
        size += len(entry.encode()) + 1
    if entries:
        bodies.append(_body(entries, request_id))
    return bodies


def _body(entries: list[str], request_id: str) -> str:
    return f'{{"v":{BODY_VERSION},"request":{json.dumps(request_id)},"messages":[{",".join(entries)}]}}'


def unpack(body: str) -> list[Message]:
    """The messages of one queue body, as the front door admitted them."""
    try:
        data: Any = json.loads(body)
        if data.get("v") != BODY_VERSION:
            raise BadQueueBody(f"queue body version {data.get('v')!r}; this consumer reads {BODY_VERSION}")
        messages: list[Message] = []
        for entry in data["messages"]:
            message = _MESSAGE.validate_python(entry["message"])
            if entry.get("anonymous_only") and isinstance(message, Alias):
                message.limit_to_anonymous()
            messages.append(message)
        return messages
    except BadQueueBody:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise BadQueueBody(f"unreadable queue body: {type(exc).__name__}") from exc


@dataclass(frozen=True)
class Drained:
    """What a batch of queue bodies came to: the ingest result (indexes into `messages`), the
    messages in the order folded, and the bodies not folded (positions in the batch): the queue
    must deliver those again; every other body is done."""

    result: IngestResult
    messages: list[Message]
    failed: list[int] = field(default_factory=list)


def drain(
    bodies: Sequence[Sequence[Message]],
    plan: TrackingPlan,
    store: UsageStore,
    now: datetime,
    limits: IngestLimits = DEFAULT_LIMITS,
    sleep: Callable[[float], None] = time.sleep,
    requests: Sequence[str] = (),
    time_left: Callable[[], float] | None = None,
) -> Drained:
    """Fold the messages of many queue bodies at once (each user written once), as admitted at the
    front door: they are not checked again, so a message accepted there is not refused here for
    the time it waited.

    requests: the front door's request id of each body: each user's write carries the request of
    their newest message (the evaluator logs it with the decisions it makes).

    When the batch cannot be folded whole (a user's write contended past every retry, or refused
    by the store), it is folded again body by body, and only the bodies whose fold failed are
    `failed`: the other users' records are done, and the failing user's come back alone. What the
    first try wrote is not written twice: every message carries the dedupe key pinned at the front
    door, so folding it again adds nothing. Stops (the rest `failed`) after INGEST_QUEUE_OUTAGE_BODIES
    bodies in a row find the store unavailable (an outage), or when `time_left()` (seconds) runs low.
    """
    messages = [m for body in bodies for m in body]
    starts = list(accumulate((len(body) for body in bodies), initial=0))
    by_message: str | dict[int, str] = (
        {i: requests[p] for p in range(len(bodies)) for i in range(starts[p], starts[p + 1])}
        if requests
        else ""
    )
    try:
        result = store_admitted(
            list(enumerate(messages)), plan, store, now, limits, sleep, by_message, IngestResult()
        )
        return Drained(result, messages)
    except (Contention, StoreUnavailable) as exc:
        logger.warning("ingest queue batch not folded whole; folding body by body", extra={"why": str(exc)})
    result = IngestResult()
    failed: list[int] = []
    outage = 0
    for position, body in enumerate(bodies):
        if outage >= INGEST_QUEUE_OUTAGE_BODIES or (
            time_left is not None and time_left() < INGEST_QUEUE_MARGIN_SECONDS
        ):
            failed.append(position)
            continue
        indexed = [(starts[position] + i, m) for i, m in enumerate(body)]
        request = requests[position] if requests else ""
        # Each body into its own result, kept only when the body folded: a body sent back is
        # judged again on redelivery, and its refusals must not be logged and counted twice.
        folded = IngestResult()
        try:
            store_admitted(indexed, plan, store, now, limits, sleep, request, folded)
            outage = 0
            _add(result, folded)
        except (Contention, StoreUnavailable) as exc:
            outage = outage + 1 if isinstance(exc, StoreUnavailable) else 0
            failed.append(position)
            logger.warning(
                "ingest queue body not folded; retried", extra={"request": request, "why": str(exc)}
            )
    return Drained(result, messages, failed)


def _add(total: IngestResult, body: IngestResult) -> None:
    total.accepted += body.accepted
    total.errors += body.errors
    total.warnings += body.warnings
    total.users_written += body.users_written
    total.accounts_written += body.accounts_written
    total.conflicts += body.conflicts
