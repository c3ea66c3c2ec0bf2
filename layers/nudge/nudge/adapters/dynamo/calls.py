"""boto3 DynamoDB calls with botocore errors turned into domain errors, shared by the repositories;
batch reads and deletes that ask again for what DynamoDB left unprocessed.

A StoreUnavailable's message is logged (the API's 503 handlers): AWS's text in it is redacted, so an
error quoting what was sent (an address, a number) cannot carry it into the logs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from nudge.backoff import THROTTLING
from nudge.model.errors import ItemTooLarge, StateConflict, StoreUnavailable, redact
from nudge.model.limits import DYNAMODB_ITEM_BYTES

CONFLICT_CODES = {"ConditionalCheckFailedException", "TransactionConflictException"}
# What DynamoDB's messages for an item over 400 KB share ("Item size has exceeded the maximum
# allowed size", "Item size to update has exceeded the maximum allowed size").
_SIZE_ERROR = "item size"
BATCH_GET_LIMIT = 100
BATCH_WRITE_LIMIT = 25
# A batch's unprocessed items (throttling) are asked for again this many times, with backoff,
# before the caller is told the store is unavailable (the whole request may then be retried).
BATCH_ATTEMPTS = 8


def read(call: Callable[..., Any], **kwargs: Any) -> Any:
    """A read: any failure is StoreUnavailable (the caller may retry the whole request)."""
    try:
        return call(**kwargs)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        raise _unavailable(f"DynamoDB {code or 'error'}: {exc}") from exc
    except BotoCoreError as exc:
        raise _unavailable(f"DynamoDB unreachable: {exc}") from exc


def write(call: Callable[..., Any], **kwargs: Any) -> None:
    """A conditional write: a failed condition (or a cancelled transaction) is StateConflict; an
    item over DynamoDB's 400 KB is ItemTooLarge (the same write can never succeed)."""
    try:
        call(**kwargs)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in CONFLICT_CODES or _cancelled_by_conflict(exc):
            raise StateConflict(code) from exc
        if _item_too_large(exc):
            raise ItemTooLarge(None, DYNAMODB_ITEM_BYTES) from exc
        raise _unavailable(f"DynamoDB {code or 'error'}: {exc}") from exc
    except BotoCoreError as exc:
        raise _unavailable(f"DynamoDB unreachable: {exc}") from exc


def conditional(call: Callable[..., Any], **kwargs: Any) -> Any | None:
    """A conditional write whose failed condition is an answer, not an error: None when it failed."""
    try:
        return call(**kwargs)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code == "ConditionalCheckFailedException":
            return None
        raise _unavailable(f"DynamoDB {code or 'error'}: {exc}") from exc
    except BotoCoreError as exc:
        raise _unavailable(f"DynamoDB unreachable: {exc}") from exc


def versioned_put(table: str, item: dict[str, Any], version: int) -> dict[str, Any]:
    """PutItem arguments that succeed only if the stored version is still `version` (0: absent)."""
    if version == 0:
        return {"TableName": table, "Item": item, "ConditionExpression": "attribute_not_exists(pk)"}
    return {
        "TableName": table,
        "Item": item,
        "ConditionExpression": "v = :expected",
        "ExpressionAttributeValues": {":expected": {"N": str(version)}},
    }


def batch_get(client: Any, table: str, keys: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The items of `keys` that exist (consistent reads), 100 per BatchGetItem; StoreUnavailable
    if DynamoDB still leaves some unprocessed after BATCH_ATTEMPTS."""
    items: list[dict[str, Any]] = []
    for start in range(0, len(keys), BATCH_GET_LIMIT):
        request: dict[str, Any] = {
            table: {"Keys": list(keys[start : start + BATCH_GET_LIMIT]), "ConsistentRead": True}
        }
        for _ in THROTTLING.with_attempts(BATCH_ATTEMPTS).tries():
            response = read(client.batch_get_item, RequestItems=request)
            items += response.get("Responses", {}).get(table, [])
            request = dict(response.get("UnprocessedKeys") or {})
            if not request:
                break
        else:
            raise StoreUnavailable(f"DynamoDB left {len(request[table]['Keys'])} reads unprocessed")
    return items


def batch_delete(client: Any, table: str, keys: Sequence[dict[str, Any]]) -> int:
    """Delete `keys` with BatchWriteItem, 25 at a time; StoreUnavailable if DynamoDB still leaves
    some unprocessed after BATCH_ATTEMPTS. Deleting a missing key is not an error, so a retried
    erasure is safe."""
    for start in range(0, len(keys), BATCH_WRITE_LIMIT):
        request: dict[str, Any] = {
            table: [{"DeleteRequest": {"Key": key}} for key in keys[start : start + BATCH_WRITE_LIMIT]]
        }
        for _ in THROTTLING.with_attempts(BATCH_ATTEMPTS).tries():
            response = read(client.batch_write_item, RequestItems=request)
            request = dict(response.get("UnprocessedItems") or {})
            if not request:
                break
        else:
            raise StoreUnavailable(f"DynamoDB left {len(request.get(table, []))} deletes unprocessed")
    return len(keys)


def _unavailable(message: str) -> StoreUnavailable:
    return StoreUnavailable(redact(message))


def _item_too_large(exc: ClientError) -> bool:
    """DynamoDB's refusal of an item over 400 KB: a ValidationException "Item size has exceeded the
    maximum allowed size" (PutItem; moto answers TransactWriteItems so too), "Item size to update
    has exceeded..." (UpdateItem), or, in a transaction, a TransactionCanceledException whose
    reasons hold a ValidationError saying so."""
    error = exc.response.get("Error", {})
    if error.get("Code") == "ValidationException":
        return _SIZE_ERROR in (error.get("Message") or "").lower()
    if error.get("Code") != "TransactionCanceledException":
        return False
    reasons: list[dict[str, Any]] = exc.response.get("CancellationReasons") or []  # type: ignore[assignment]
    return any(
        r.get("Code") == "ValidationError" and _SIZE_ERROR in (r.get("Message") or "").lower()
        for r in reasons
    )


def _cancelled_by_conflict(exc: ClientError) -> bool:
    if exc.response.get("Error", {}).get("Code") != "TransactionCanceledException":
        return False
    reasons: list[dict[str, Any]] = exc.response.get("CancellationReasons") or []  # type: ignore[assignment]
    return bool({r.get("Code") for r in reasons} & {"ConditionalCheckFailed", "TransactionConflict"})
