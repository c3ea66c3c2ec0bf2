"""The account side of the ledger table, for erasure (keys as in nudge.adapters.dynamo.ledger):

ACCOUNT#<id> / DECISION#<id>   an escalation decision: user_id, decision (JSON, holds `user`)
ACCOUNT#<id> / ESCALATION      v, esc (JSON, holds `user`), status
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from nudge.adapters.dynamo import calls
from nudge.adapters.dynamo.ledger import DECISION, ESCALATION
from nudge.backoff import CONTENTION
from nudge.model.decisions import Decision
from nudge.model.errors import StateConflict
from nudge.model.ledger import Escalation
from nudge.services.erasure import ERASED

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

# A rewrite of the escalation races only dispatch opening or CS handling it: a few tries do.
ESCALATION_ATTEMPTS = 5


def _key(account_id: str, sk: str) -> dict[str, Any]:
    return {"pk": {"S": f"ACCOUNT#{account_id}"}, "sk": {"S": sk}}


class DynamoAccountLedger:
    def __init__(self, client: DynamoDBClient, table: str) -> None:
        self.client = client
        self.table = table

    def escalation(self, account_id: str) -> Escalation | None:
        item = self._get(account_id, ESCALATION)
        return Escalation.model_validate_json(item["esc"]["S"]) if item else None

    def decisions_of(self, account_id: str, user_id: str) -> list[str]:
        # An account holds one escalation decision per rule and window: a small partition.
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "FilterExpression": "user_id = :user",
            "ProjectionExpression": "sk",
            "ExpressionAttributeValues": {
                ":pk": {"S": f"ACCOUNT#{account_id}"},
                ":prefix": {"S": DECISION},
                ":user": {"S": user_id},
            },
            "ConsistentRead": True,
        }
        ids: list[str] = []
        while True:
            response = calls.read(self.client.query, **kwargs)
            ids += [item["sk"]["S"].removeprefix(DECISION) for item in response.get("Items", [])]
            if "LastEvaluatedKey" not in response:
                return ids
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def delete_decisions(self, account_id: str, decision_ids: Sequence[str]) -> int:
        keys = [_key(account_id, DECISION + d) for d in decision_ids]
        return calls.batch_delete(self.client, self.table, keys)

    def anonymize_decision(self, account_id: str, decision_id: str, user_id: str) -> bool:
        item = self._get(account_id, DECISION + decision_id)
        if item is None or item.get("user_id", {}).get("S") != user_id:
            return False
        decision = Decision.model_validate_json(item["decision"]["S"]).model_copy(update={"user": ERASED})
        # Conditional on the user still being them: a concurrent erasure does it once.
        changed = calls.conditional(
            self.client.update_item,
            TableName=self.table,
            Key=_key(account_id, DECISION + decision_id),
            UpdateExpression="SET user_id = :erased, decision = :decision",
            ConditionExpression="user_id = :user",
            ExpressionAttributeValues={
                ":erased": {"S": ERASED},
                ":decision": {"S": decision.model_dump_json()},
                ":user": {"S": user_id},
            },
        )
        return changed is not None

    def anonymize_escalation(self, account_id: str, user_id: str) -> bool:
        for _ in CONTENTION.with_attempts(ESCALATION_ATTEMPTS).tries():
            item = self._get(account_id, ESCALATION)
            if item is None:
                return False
            escalation = Escalation.model_validate_json(item["esc"]["S"])
            if escalation.user != user_id:
                return False
            # Versioned like every escalation write, so an escalation handled meanwhile is not undone.
            try:
                calls.write(
                    self.client.put_item,
                    TableName=self.table,
                    Item={
                        **item,
                        "v": {"N": str(int(item["v"]["N"]) + 1)},
                        "esc": {"S": escalation.model_copy(update={"user": ERASED}).model_dump_json()},
                    },
                    ConditionExpression="v = :old",
                    ExpressionAttributeValues={":old": item["v"]},
                )
            except StateConflict:
                continue
            return True
        raise StateConflict(f"escalation of an account kept moving after {ESCALATION_ATTEMPTS} attempts")

    def _get(self, account_id: str, sk: str) -> dict[str, Any] | None:
        response = calls.read(
            self.client.get_item, TableName=self.table, Key=_key(account_id, sk), ConsistentRead=True
        )
        item: dict[str, Any] | None = response.get("Item")
        return item
