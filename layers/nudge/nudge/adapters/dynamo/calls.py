"""boto3 DynamoDB calls with botocore errors turned into domain errors, shared by the repositories."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from nudge.model.errors import StateConflict, StoreUnavailable

CONFLICT_CODES = {"ConditionalCheckFailedException", "TransactionConflictException"}


def read(call: Callable[..., Any], **kwargs: Any) -> Any:
    """A read: any failure is StoreUnavailable (the caller may retry the whole request)."""
    try:
        return call(**kwargs)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        raise StoreUnavailable(f"DynamoDB {code or 'error'}: {exc}") from exc
    except BotoCoreError as exc:
        raise StoreUnavailable(f"DynamoDB unreachable: {exc}") from exc


def write(call: Callable[..., Any], **kwargs: Any) -> None:
    """A conditional write: a failed condition (or a cancelled transaction) is StateConflict."""
    try:
        call(**kwargs)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in CONFLICT_CODES or _cancelled_by_conflict(exc):
            raise StateConflict(code) from exc
        raise StoreUnavailable(f"DynamoDB {code or 'error'}: {exc}") from exc
    except BotoCoreError as exc:
        raise StoreUnavailable(f"DynamoDB unreachable: {exc}") from exc


def conditional(call: Callable[..., Any], **kwargs: Any) -> Any | None:
    """A conditional write whose failed condition is an answer, not an error: None when it failed."""
    try:
        return call(**kwargs)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code == "ConditionalCheckFailedException":
            return None
        raise StoreUnavailable(f"DynamoDB {code or 'error'}: {exc}") from exc
    except BotoCoreError as exc:
        raise StoreUnavailable(f"DynamoDB unreachable: {exc}") from exc


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


def _cancelled_by_conflict(exc: ClientError) -> bool:
    if exc.response.get("Error", {}).get("Code") != "TransactionCanceledException":
        return False
    reasons: list[dict[str, Any]] = exc.response.get("CancellationReasons") or []  # type: ignore[assignment]
    return bool({r.get("Code") for r in reasons} & {"ConditionalCheckFailed", "TransactionConflict"})
