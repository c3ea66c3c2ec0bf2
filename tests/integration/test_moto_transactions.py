"""The local stack's transactions stay all-or-nothing without moto's per-item table copy."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError

from nudge.tools.local.aws import LockedMotoServer
from nudge.tools.local.template import table_create_kwargs


def test_a_failed_condition_applies_no_item_of_the_transaction(
    moto_server: LockedMotoServer, template_path: Path
) -> None:
    client = boto3.client("dynamodb", endpoint_url=moto_server.endpoint_url)
    client.create_table(**table_create_kwargs(template_path, "UsageTable", "tx-test"))
    user = {"pk": {"S": "USER#u"}, "sk": {"S": "STATE"}}
    counter = {"pk": {"S": "ACCOUNT#a"}, "sk": {"S": "WEEK#2026-W48#00"}}
    client.put_item(TableName="tx-test", Item={**user, "v": {"N": "2"}})

    def transaction(expected: str) -> None:
        client.transact_write_items(
            TransactItems=[
                {
                    "Put": {
                        "TableName": "tx-test",
                        "Item": {**user, "v": {"N": str(int(expected) + 1)}},
                        "ConditionExpression": "v = :e",
                        "ExpressionAttributeValues": {":e": {"N": expected}},
                    }
                },
                {
                    "Update": {
                        "TableName": "tx-test",
                        "Key": counter,
                        "UpdateExpression": "ADD active_users :one",
                        "ExpressionAttributeValues": {":one": {"N": "1"}},
                    }
                },
            ]
        )

    with pytest.raises(ClientError) as caught:
        transaction("1")
    assert caught.value.response["Error"]["Code"] == "TransactionCanceledException"
    assert caught.value.response["CancellationReasons"][0]["Code"] == "ConditionalCheckFailed"
    assert "Item" not in client.get_item(TableName="tx-test", Key=counter)

    transaction("2")
    assert client.get_item(TableName="tx-test", Key=user)["Item"]["v"] == {"N": "3"}
    assert client.get_item(TableName="tx-test", Key=counter)["Item"]["active_users"] == {"N": "1"}
