"""DynamoDB usage table: users, account traits and sharded account rollups in one table.

Keys:  USER#<id> / STATE               one item per user: version, account, compressed state,
                                       `corr`: the request that last wrote it (for the logs),
                                       `expires_at`: TTL, the state TTL after this write (so the
                                       write time too: items written before this layout also
                                       hold it as `updated_at`, 42 bytes of every write)
       USER#<id> / MERGED#<other>      a back-reference: <other>'s history was merged into <id>
                                       (and USER#<other> / STATE points here); erasure follows them.
                                       Pointer and back-reference expire with the state TTL from
                                       the merge, the back-reference a week later (it must outlive
                                       the pointer it lets erasure find)
       ACCOUNT#<id> / TRAITS           account traits (last writer wins per trait)
       ACCOUNT#<id> / ROLLUP#<k>       rollup shard k: per ISO week `u:<week>` active users and
                                       `s:<week>` sessions (the ROLLUP_WEEKS_KEPT latest weeks),
                                       and `adopters:<feature>` users who adopted each feature
       ACCOUNT#<id> / WEEK#<week>#<k>  the layout before ROLLUP#<k> (one item per week, and
       ACCOUNT#<id> / FEATURES#<k>     one for features): still read and summed, no longer written
Index by_account (sparse, keys only): account_id -> the USER#<id> STATE items that carry it
(people only: an anonymous profile or a pointer carries no account_id).
A user's write is one conditional PutItem carrying the rollup delta it implies (`rd`); the rollup
consumer applies the deltas off the stream, summed per account per batch, exactly once
(nudge.adapters.dynamo.rollups). A merge that turns other profiles into pointers stays one
transaction (the person, each pointer and back-reference), its delta on the person's item too.
Rollup shards spread a hot account over several items; each is written by ADD, so writers never
conflict on a version.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from nudge.adapters.dynamo import calls, codec
from nudge.adapters.dynamo.rollups import (
    ACTIVE,
    ADOPTERS,
    DELTA_ATTRIBUTE,
    ROLLUP,
    SESSIONS,
    encode_delta,
    weeks_past,
)
from nudge.model.errors import ItemTooLarge
from nudge.model.limits import MAX_ITEM_BYTES, STATE_TTL_DAYS
from nudge.model.state import AccountRollup, AccountState, RollupDelta, UserState, WeekRollup
from nudge.model.versioned import Versioned

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import TransactWriteItemTypeDef

# On a user's STATE item: the id of the request that last wrote it (the ingest API's request id),
# which the evaluator reads from the stream image and logs and decides under.
CORRELATION_ATTRIBUTE = "corr"
MERGED = "MERGED#"
# The usage table's TTL attribute (template.yaml TimeToLiveSpecification), epoch seconds.
EXPIRES = "expires_at"
# TTL deletes within days of expiry, in no set order: a back-reference expires this much after the
# pointer it records, so erasure can always find a pointer that is still there.
BACK_REFERENCE_GRACE = timedelta(days=7)
# What `fits` leaves for what only the write knows: the item's version digits and its write time
# (the rollup delta, `rd`, it measures with the item).
FITS_MARGIN = 64


def user_key(user_id: str) -> dict[str, Any]:
    return {"pk": {"S": f"USER#{user_id}"}, "sk": {"S": "STATE"}}


def account_key(account_id: str, sort: str = "TRAITS") -> dict[str, Any]:
    return {"pk": {"S": f"ACCOUNT#{account_id}"}, "sk": {"S": sort}}


def shard_of(user_id: str, shards: int) -> int:
    return zlib.crc32(user_id.encode()) % shards


def partition_keys(client: DynamoDBClient, table: str, pk: str) -> list[dict[str, Any]]:
    """The keys of every item under `pk` (strongly consistent, all pages)."""
    kwargs: dict[str, Any] = {
        "TableName": table,
        "KeyConditionExpression": "pk = :pk",
        "ExpressionAttributeValues": {":pk": {"S": pk}},
        "ProjectionExpression": "pk, sk",
        "ConsistentRead": True,
    }
    keys: list[dict[str, Any]] = []
    while True:
        response = calls.read(client.query, **kwargs)
        keys += [{"pk": item["pk"], "sk": item["sk"]} for item in response.get("Items", [])]
        if "LastEvaluatedKey" not in response:
            return keys
        kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]


class DynamoUsageStore:
    def __init__(
        self,
        client: DynamoDBClient,
        table: str,
        rollup_shards: int = 16,
        *,
        account_index: str = "by_account",
        state_ttl: timedelta = timedelta(days=STATE_TTL_DAYS),
        max_item_bytes: int = MAX_ITEM_BYTES,
    ) -> None:
        self.client = client
        self.table = table
        self.shards = rollup_shards
        self.account_index = account_index
        self.state_ttl = state_ttl
        self.max_item_bytes = max_item_bytes

    def load_users(self, user_ids: Sequence[str]) -> dict[str, Versioned[UserState]]:
        found: dict[str, Versioned[UserState]] = {}
        keys = [user_key(uid) for uid in dict.fromkeys(user_ids)]
        for item in calls.batch_get(self.client, self.table, keys):
            state = codec.decode(item["state"]["B"], UserState)
            found[state.user_id] = Versioned(state, int(item["v"]["N"]))
        return found

    def save_user(
        self,
        state: UserState,
        version: int,
        rollup: RollupDelta | None,
        now: datetime,
        correlation_id: str = "",
        absorbed: Sequence[tuple[str, int]] = (),
    ) -> None:
        item = self._state_item(state, version, now, correlation_id, rollup)
        size = codec.item_bytes(item)
        if size > self.max_item_bytes:
            raise ItemTooLarge(size, self.max_item_bytes)
        put = calls.versioned_put(self.table, item, version)
        if not absorbed:
            calls.write(self.client.put_item, **put)
            return
        items: list[TransactWriteItemTypeDef] = [{"Put": put}]  # type: ignore[typeddict-item]
        for other, other_version in absorbed:
            # The merged id's record becomes a pointer, on the version it was read at (0: it had
            # none), in the same transaction: a writer that folded into it meanwhile makes the
            # whole merge retry, so nothing it wrote is lost.
            pointer = UserState(user_id=other, merged_into=state.user_id)
            pointer_item = self._state_item(pointer, other_version, now, correlation_id)
            pointer_item["merged_into"] = {"S": state.user_id}
            items.append({"Put": calls.versioned_put(self.table, pointer_item, other_version)})  # type: ignore[typeddict-item]
            back = {
                "pk": {"S": f"USER#{state.user_id}"},
                "sk": {"S": MERGED + other},
                "merged_at": {"S": now.isoformat()},
                EXPIRES: self._expires(now + BACK_REFERENCE_GRACE),
            }
            items.append({"Put": {"TableName": self.table, "Item": back}})
        calls.write(self.client.transact_write_items, TransactItems=items)

    def fits(self, state: UserState, correlation_id: str = "", rollup: RollupDelta | None = None) -> bool:
        """Whether save_user would take `state`'s item with `rollup` (with a few bytes to spare:
        its version and the time of the write are not known yet)."""
        item = self._state_item(state, 0, datetime.now(UTC), correlation_id, rollup)
        return codec.item_bytes(item) + FITS_MARGIN <= self.max_item_bytes

    def _expires(self, now: datetime) -> dict[str, str]:
        return {"N": str(int((now + self.state_ttl).timestamp()))}

    def _state_item(
        self,
        state: UserState,
        version: int,
        now: datetime,
        correlation_id: str,
        rollup: RollupDelta | None = None,
    ) -> dict[str, Any]:
        # Every write of the user's state moves its expiry: only a user inactive for the whole
        # state TTL expires (a pointer expires with the TTL from its merge).
        item: dict[str, Any] = {
            **user_key(state.user_id),
            "v": {"N": str(version + 1)},
            "state": {"B": codec.encode(state)},
            EXPIRES: self._expires(now),
        }
        # Only people are found by account (evaluate_account): not anonymous profiles, not pointers.
        if state.account_id and state.addressable:
            item["account_id"] = {"S": state.account_id}
        if correlation_id:
            item[CORRELATION_ATTRIBUTE] = {"S": correlation_id}
        if rollup is not None and not rollup.is_empty():
            # Applied off this write by the rollup consumer (the table's stream), exactly once.
            item[DELTA_ATTRIBUTE] = {"S": encode_delta(rollup)}
        return item

    def merged_ids(self, user_id: str) -> list[str]:
        """The back-references under USER#<id>, and theirs in turn (a merged userId may have
        merged others before): one Query per profile in the tree, which has no cycles."""
        found: list[str] = []
        targets = [user_id]
        while targets:
            sources = [
                key["sk"]["S"].removeprefix(MERGED)
                for target in targets
                for key in partition_keys(self.client, self.table, f"USER#{target}")
                if key["sk"]["S"].startswith(MERGED)
            ]
            found += sources
            targets = sources
        return found

    def load_account(self, account_id: str) -> Versioned[AccountState] | None:
        response = calls.read(
            self.client.get_item, TableName=self.table, Key=account_key(account_id), ConsistentRead=True
        )
        item = response.get("Item")
        if item is None:
            return None
        return Versioned(codec.decode(item["state"]["B"], AccountState), int(item["v"]["N"]))

    def save_account(self, state: AccountState, version: int, now: datetime) -> None:
        item: dict[str, Any] = {
            **account_key(state.account_id),
            "v": {"N": str(version + 1)},
            "updated_at": {"S": now.isoformat()},
            "state": {"B": codec.encode(state)},
        }
        size = codec.item_bytes(item)
        if size > self.max_item_bytes:
            raise ItemTooLarge(size, self.max_item_bytes)
        calls.write(self.client.put_item, **calls.versioned_put(self.table, item, version))

    def load_rollup(self, account_id: str) -> AccountRollup:
        """The account's rollup summed over its shards, in this layout (ROLLUP#<k>) and the one
        before it (WEEK#<week>#<k>, FEATURES#<k>), which deployed tables still hold."""
        rollup = AccountRollup()
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": f"ACCOUNT#{account_id}"}},
        }
        while True:
            response = calls.read(self.client.query, **kwargs)
            for item in response.get("Items", []):
                sort = item["sk"]["S"]
                if sort.startswith(ROLLUP):
                    for name, value in item.items():
                        if name.startswith(ACTIVE):
                            _week(rollup, name.removeprefix(ACTIVE)).active_users += int(value["N"])
                        elif name.startswith(SESSIONS):
                            _week(rollup, name.removeprefix(SESSIONS)).sessions += int(value["N"])
                elif sort.startswith("WEEK#"):
                    week = _week(rollup, sort.split("#")[1])
                    week.active_users += int(item.get("active_users", {}).get("N", "0"))
                    week.sessions += int(item.get("sessions", {}).get("N", "0"))
                if sort.startswith((ROLLUP, "FEATURES#")):
                    for name, value in item.items():
                        if name.startswith(ADOPTERS):
                            feature = name.removeprefix(ADOPTERS)
                            rollup.feature_adopters[feature] = rollup.feature_adopters.get(feature, 0) + int(
                                value["N"]
                            )
            if "LastEvaluatedKey" not in response:
                break
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        # The kept weeks only (as the TTL of WEEK# items kept them): a shard not written for a
        # while may still hold older ones.
        horizon = weeks_past(max(rollup.weeks))[0] if rollup.weeks else ""
        rollup.weeks = {week: rollup.weeks[week] for week in sorted(rollup.weeks) if week > horizon}
        return rollup

    def users_of_account(self, account_id: str, limit: int | None = None) -> list[str]:
        """One Query of the sparse by_account index, page by page (eventually consistent: a user
        who joined the account a moment ago may be missing, and is evaluated by their own change)."""
        users: list[str] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": self.account_index,
            "KeyConditionExpression": "account_id = :a",
            "ExpressionAttributeValues": {":a": {"S": account_id}},
        }
        while limit is None or len(users) < limit:
            if limit is not None:
                kwargs["Limit"] = min(1000, limit - len(users))
            response = calls.read(self.client.query, **kwargs)
            users += [item["pk"]["S"].removeprefix("USER#") for item in response.get("Items", [])]
            if "LastEvaluatedKey" not in response:
                break
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        return users if limit is None else users[:limit]

    def erase_user(self, user_id: str) -> int:
        """Delete every item under USER#<id> (state, segment record, anything added later); how many.
        The user's account rollups hold counts only and stay."""
        keys = partition_keys(self.client, self.table, f"USER#{user_id}")
        return calls.batch_delete(self.client, self.table, keys)


def _week(rollup: AccountRollup, week: str) -> WeekRollup:
    return rollup.weeks.setdefault(week, WeekRollup())
