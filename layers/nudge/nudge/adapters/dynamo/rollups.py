"""Account rollups in the usage table, applied off the user's write (bench section 3 says why).

A user's write stores the delta it implies on the user's STATE item as `rd` (compact JSON:
`["<account>", {"<week>": [users, sessions]}, {"<feature>": adopters}]`; the next write replaces
it). The rollup consumer reads `rd` from the table's stream and applies a batch's deltas, summed
per account, in one TransactWriteItems: one Update per account (ADD, on shard ROLLUP#<k>, k a hash
of the run's key, so a hot account's batches spread over its shards) and one
Put of the run's marker:

       ROLLUPRUN#<first record's eventID> / MARK   `through`: the last sequence number applied,
                                                   `expires_at`: past the stream's 24 h retention

The key is the run's first record's eventID, unique in the stream (sequence numbers are documented
as ordered within a shard only; `through` compares them within the run's own shard). A retried
batch finds its marker (the Put's condition fails, nothing is written) and applies only
the records past `through`. The marker is keyed by the run, never by the account, so nothing on
the account's items grows with its users or batches.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from nudge.adapters.dynamo import calls
from nudge.model.calendar import week_key
from nudge.model.errors import StateConflict
from nudge.model.limits import ROLLUP_MARKER_TTL_HOURS, ROLLUP_WEEKS_KEPT
from nudge.model.state import RollupDelta

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import TransactWriteItemTypeDef

# On a user's STATE item: the rollup delta of the write that made this version.
DELTA_ATTRIBUTE = "rd"
ROLLUP = "ROLLUP#"
RUN = "ROLLUPRUN#"
ACTIVE = "u:"
SESSIONS = "s:"
ADOPTERS = "adopters:"
# Each rollup write removes the weeks this many weeks past the kept ones: a shard written at least
# that often holds no older week (and older ones are not read).
WEEKS_REMOVED = 4


class UndecodableDelta(ValueError):
    """An `rd` attribute Nudge did not write."""


def encode_delta(delta: RollupDelta) -> str:
    weeks = {
        week: [delta.week_users.get(week, 0), delta.week_sessions.get(week, 0)]
        for week in sorted(set(delta.week_users) | set(delta.week_sessions))
    }
    return json.dumps(
        [delta.account_id, weeks, dict(sorted(delta.feature_adopters.items()))], separators=(",", ":")
    )


def decode_delta(text: str) -> RollupDelta:
    try:
        account, weeks, features = json.loads(text)
        delta = RollupDelta(
            account_id=account,
            week_users={w: int(n[0]) for w, n in weeks.items() if n[0]},
            week_sessions={w: int(n[1]) for w, n in weeks.items() if n[1]},
            feature_adopters={f: int(n) for f, n in features.items()},
        )
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        raise UndecodableDelta(f"rollup delta cannot be decoded ({type(exc).__name__})") from None
    return delta


def run_shard(run: str, shards: int) -> int:
    """The rollup shard a run's updates go to (every account of the run on the same k)."""
    return zlib.crc32(run.encode()) % shards


def rollup_key(account_id: str, shard: int) -> dict[str, Any]:
    return {"pk": {"S": f"ACCOUNT#{account_id}"}, "sk": {"S": f"{ROLLUP}{shard:02d}"}}


def rollup_update(table: str, shard: int, delta: RollupDelta) -> TransactWriteItemTypeDef:
    """One Update of the account's rollup shard: ADD the week and feature counts, and REMOVE the
    weeks just past the kept ones (those no write adds to any more)."""
    names: dict[str, str] = {}
    values: dict[str, Any] = {}
    adds: list[str] = []
    counts = [
        *((ACTIVE + week, n) for week, n in sorted(delta.week_users.items())),
        *((SESSIONS + week, n) for week, n in sorted(delta.week_sessions.items())),
        *((ADOPTERS + feature, n) for feature, n in sorted(delta.feature_adopters.items())),
    ]
    for i, (name, n) in enumerate(counts):
        names[f"#a{i}"] = name
        values[f":a{i}"] = {"N": str(n)}
        adds.append(f"#a{i} :a{i}")
    expression = "ADD " + ", ".join(adds)
    weeks = set(delta.week_users) | set(delta.week_sessions)
    if weeks:
        gone = sorted(set(weeks_past(max(weeks))) - weeks)
        for i, week in enumerate(w for old in gone for w in (ACTIVE + old, SESSIONS + old)):
            names[f"#r{i}"] = week
        expression += " REMOVE " + ", ".join(n for n in names if n.startswith("#r"))
    return {
        "Update": {
            "TableName": table,
            "Key": rollup_key(delta.account_id, shard),
            "UpdateExpression": expression,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }
    }


def weeks_past(latest: str) -> list[str]:
    """The WEEKS_REMOVED ISO weeks just before the ROLLUP_WEEKS_KEPT weeks that end with `latest`."""
    year, week = latest.split("-W")
    monday = date.fromisocalendar(int(year), int(week), 1)
    return [week_key(monday - timedelta(weeks=ROLLUP_WEEKS_KEPT + i)) for i in range(WEEKS_REMOVED)]


def run_key(run: str) -> dict[str, Any]:
    return {"pk": {"S": RUN + run}, "sk": {"S": "MARK"}}


class DynamoRollupLedger:
    def __init__(self, client: DynamoDBClient, table: str, rollup_shards: int = 16) -> None:
        self.client = client
        self.table = table
        self.shards = rollup_shards

    def apply(
        self,
        run: str,
        through: str,
        deltas: Sequence[RollupDelta],
        now: datetime,
        applied_through: str | None = None,
    ) -> str | None:
        shard = run_shard(run, self.shards)
        marker: dict[str, Any] = {
            "TableName": self.table,
            "Item": {
                **run_key(run),
                "through": {"S": through},
                "expires_at": {"N": str(int((now + timedelta(hours=ROLLUP_MARKER_TTL_HOURS)).timestamp()))},
            },
        }
        if applied_through is None:
            marker["ConditionExpression"] = "attribute_not_exists(pk)"
        else:
            marker["ConditionExpression"] = "through = :held"
            marker["ExpressionAttributeValues"] = {":held": {"S": applied_through}}
        items: list[TransactWriteItemTypeDef] = [rollup_update(self.table, shard, d) for d in deltas]
        items.append({"Put": marker})  # type: ignore[typeddict-item]
        try:
            calls.write(self.client.transact_write_items, TransactItems=items)
        except StateConflict:
            held = self.applied_through(run)
            if held is None or held == applied_through:
                raise  # not the marker: another transaction on one of the accounts
            return held
        return None

    def applied_through(self, run: str) -> str | None:
        response = calls.read(
            self.client.get_item, TableName=self.table, Key=run_key(run), ConsistentRead=True
        )
        item: Mapping[str, Any] | None = response.get("Item")
        return str(item["through"]["S"]) if item else None
