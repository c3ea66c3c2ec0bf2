"""What a DynamoDB write's errors become at the adapter's edge (nudge.adapters.dynamo.calls)."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from nudge.adapters.dynamo import calls
from nudge.model.errors import ItemTooLarge, StateConflict, StoreUnavailable
from nudge.model.limits import DYNAMODB_ITEM_BYTES


def refusing(code: str, message: str, reasons: list[dict[str, Any]] | None = None) -> Any:
    response: dict[str, Any] = {"Error": {"Code": code, "Message": message}}
    if reasons is not None:
        response["CancellationReasons"] = reasons

    def call(**_: Any) -> None:
        raise ClientError(response, "TransactWriteItems")  # type: ignore[arg-type]

    return call


@pytest.mark.parametrize(
    "call",
    [
        # PutItem (and TransactWriteItems on moto): the request's item is over 400 KB
        refusing("ValidationException", "Item size has exceeded the maximum allowed size"),
        # UpdateItem
        refusing("ValidationException", "Item size to update has exceeded the maximum allowed size"),
        # TransactWriteItems as AWS documents it: cancelled, the oversize item's reason a ValidationError
        refusing(
            "TransactionCanceledException",
            "Transaction cancelled, please refer cancellation reasons for specific reasons [ValidationError, None]",
            [
                {"Code": "ValidationError", "Message": "Item size has exceeded the maximum allowed size"},
                {"Code": "None"},
            ],
        ),
    ],
)
def test_an_item_over_dynamodbs_limit_is_item_too_large_never_store_unavailable(call: Any) -> None:
    with pytest.raises(ItemTooLarge) as refused:
        calls.write(call)
    assert refused.value.limit == DYNAMODB_ITEM_BYTES


def test_other_write_errors_keep_their_meaning() -> None:
    with pytest.raises(StateConflict):
        calls.write(
            refusing(
                "TransactionCanceledException",
                "Transaction cancelled",
                [
                    {"Code": "ConditionalCheckFailed", "Message": "The conditional request failed"},
                    {"Code": "None"},
                ],
            )
        )
    with pytest.raises(StoreUnavailable):
        calls.write(refusing("ValidationException", "One or more parameter values were invalid"))
    with pytest.raises(StoreUnavailable):
        calls.write(refusing("ProvisionedThroughputExceededException", "Rate exceeded"))
