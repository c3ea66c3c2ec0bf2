"""The ledger on DynamoDB (the ledger table: pk, sk, TTL on expires_at).

    USER#<id>    / DELIVERY          v, rec (zlib JSON: recent sends, last send per rule), unsub (SS),
                                     expires_at (TTL) only while it holds no unsubscribe
    USER#<id>    / DECISION#<id>     a message decision: outcome, reason, status, rule, channel, ...
    ACCOUNT#<id> / DECISION#<id>     an escalation decision (one per account, whichever user raised it)
    ACCOUNT#<id> / ESCALATION        v, the open (or handled) escalation

Unsubscribes are a string set ADDed outside the version: a user's click must never wait for, or
be lost to, a dispatch in flight; dispatch's versioned update leaves `unsub` alone.

A delivery record expires (the state TTL after its last write) only while it holds no unsubscribe:
an unsubscribe REMOVEs `expires_at`, and a dispatch sets it only on the condition that `unsub`
still does not exist (an unsubscribe that lands between its read and its write makes it retry),
so a user who asked for no more mail is never forgotten by TTL.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from nudge.adapters.dynamo import calls, codec
from nudge.backoff import CONTENTION
from nudge.model.decisions import Decision
from nudge.model.delivery import DeliveryRecord
from nudge.model.errors import StateConflict
from nudge.model.ledger import Commit, Escalation, LedgerEntry, Outcome, Status, UserLedger
from nudge.model.limits import STATE_TTL_DAYS
from nudge.model.versioned import Versioned

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

DELIVERY = "DELIVERY"
ESCALATION = "ESCALATION"
DECISION = "DECISION#"
# An entry's feedback: one attribute per kind (fb_delivered, fb_opened, ...), the first time it was
# reported, so recording is one idempotent SET if_not_exists.
FEEDBACK = "fb_"


def _key(pk: str, sk: str) -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"S": sk}}


def entry_item(entry: LedgerEntry, retention: timedelta) -> dict[str, Any]:
    d = entry.decision
    item: dict[str, Any] = {
        **_key(entry.subject, DECISION + entry.decision_id),
        "outcome": {"S": entry.outcome},
        "reason": {"S": entry.reason},
        "status": {"S": entry.status},
        "rule": {"S": d.rule},
        "channel": {"S": d.channel},
        "kind": {"S": d.kind},
        "user_id": {"S": d.user},
        "decided_at": {"S": d.decided_at.isoformat()},
        "recorded_at": {"S": entry.recorded_at.isoformat()},
        "updated_at": {"S": entry.updated_at.isoformat()},
        "decision": {"S": d.model_dump_json()},
        "expires_at": {"N": str(int((entry.recorded_at + retention).timestamp()))},
    }
    if d.account:
        item["account_id"] = {"S": d.account}
    if entry.deliver_at is not None:
        item["deliver_at"] = {"S": entry.deliver_at.isoformat()}
    if entry.provider_id:
        item["provider_id"] = {"S": entry.provider_id}
    for kind, at in entry.feedback.items():
        item[FEEDBACK + kind] = {"S": at.isoformat()}
    if entry.channel_why:
        item["channel_why"] = {"S": entry.channel_why}
    return item


def entry_of(item: dict[str, Any]) -> LedgerEntry:
    deliver_at = item.get("deliver_at", {}).get("S")
    return LedgerEntry(
        decision=Decision.model_validate_json(item["decision"]["S"]),
        outcome=item["outcome"]["S"],
        reason=item.get("reason", {}).get("S", ""),
        status=item.get("status", {}).get("S", ""),
        deliver_at=datetime.fromisoformat(deliver_at) if deliver_at else None,
        recorded_at=datetime.fromisoformat(item["recorded_at"]["S"]),
        updated_at=datetime.fromisoformat(item["updated_at"]["S"]),
        provider_id=item.get("provider_id", {}).get("S", ""),
        feedback={
            name.removeprefix(FEEDBACK): datetime.fromisoformat(value["S"])
            for name, value in item.items()
            if name.startswith(FEEDBACK) and "S" in value
        },
        channel_why=item.get("channel_why", {}).get("S", ""),
    )


class DynamoLedger:
    def __init__(
        self,
        client: DynamoDBClient,
        table: str,
        retention: timedelta = timedelta(days=400),
        *,
        state_ttl: timedelta = timedelta(days=STATE_TTL_DAYS),
    ) -> None:
        self.client = client
        self.table = table
        self.retention = retention
        self.state_ttl = state_ttl

    def _lifetime(
        self, unsubscribed: set[str], now: datetime, condition: str, values: dict[str, Any]
    ) -> tuple[str, str]:
        """The update's clause for `expires_at` and its condition: a record holding unsubscribes
        never expires; one without expires the state TTL from now, if none arrived meanwhile."""
        if unsubscribed:
            return " REMOVE expires_at", condition
        values[":expires"] = {"N": str(int((now + self.state_ttl).timestamp()))}
        return ", expires_at = :expires", f"{condition} AND attribute_not_exists(unsub)"

    def load(self, user_id: str, account_id: str | None, keys: Sequence[tuple[str, str]]) -> UserLedger:
        wanted = [_key(f"USER#{user_id}", DELIVERY)]
        if account_id:
            wanted.append(_key(f"ACCOUNT#{account_id}", ESCALATION))
        wanted += [_key(subject, DECISION + decision_id) for subject, decision_id in dict.fromkeys(keys)]
        items = calls.batch_get(self.client, self.table, wanted)
        record: Versioned[DeliveryRecord] = Versioned(DeliveryRecord(), 0)
        escalation: Versioned[Escalation] | None = None
        entries: dict[str, LedgerEntry] = {}
        for item in items:
            sk = item["sk"]["S"]
            if sk == DELIVERY:
                value = codec.decode(item["rec"]["B"], DeliveryRecord) if "rec" in item else DeliveryRecord()
                value.unsubscribed = set(item.get("unsub", {}).get("SS", []))
                record = Versioned(value, int(item.get("v", {}).get("N", "0")))
            elif sk == ESCALATION:
                escalation = Versioned(Escalation.model_validate_json(item["esc"]["S"]), int(item["v"]["N"]))
            else:
                entries[sk.removeprefix(DECISION)] = entry_of(item)
        return UserLedger(record=record, entries=entries, escalation=escalation)

    def commit(self, commit: Commit, now: datetime) -> None:
        ops: list[dict[str, Any]] = []
        if commit.record is not None:
            stored = commit.record.model_copy(update={"unsubscribed": set()})
            condition = "attribute_not_exists(v)" if commit.record_version == 0 else "v = :old"
            values: dict[str, Any] = {
                ":new": {"N": str(commit.record_version + 1)},
                ":rec": {"B": codec.encode(stored)},
            }
            if commit.record_version:
                values[":old"] = {"N": str(commit.record_version)}
            lifetime, condition = self._lifetime(commit.record.unsubscribed, now, condition, values)
            ops.append(
                {
                    "Update": {
                        "TableName": self.table,
                        "Key": _key(f"USER#{commit.user_id}", DELIVERY),
                        "UpdateExpression": "SET v = :new, rec = :rec" + lifetime,
                        "ConditionExpression": condition,
                        "ExpressionAttributeValues": values,
                    }
                }
            )
        for entry in commit.entries:
            put: dict[str, Any] = {"TableName": self.table, "Item": entry_item(entry, self.retention)}
            if entry.decision_id in commit.replacing:
                put["ConditionExpression"] = "outcome = :deferred"
                put["ExpressionAttributeValues"] = {":deferred": {"S": "deferred"}}
            else:
                put["ConditionExpression"] = "attribute_not_exists(pk)"
            ops.append({"Put": put})
        if commit.escalation is not None:
            account, escalation, version = commit.escalation
            item = {
                **_key(f"ACCOUNT#{account}", ESCALATION),
                "v": {"N": str(version + 1)},
                "status": {"S": "handled" if escalation.handled_at else "open"},
                "esc": {"S": escalation.model_dump_json()},
            }
            put = {"TableName": self.table, "Item": item}
            if version == 0:
                put["ConditionExpression"] = "attribute_not_exists(pk)"
            else:
                put["ConditionExpression"] = "v = :old"
                put["ExpressionAttributeValues"] = {":old": {"N": str(version)}}
            ops.append({"Put": put})
        if not ops:
            return
        if len(ops) == 1:
            only = ops[0]
            kind, args = next(iter(only.items()))
            call = self.client.put_item if kind == "Put" else self.client.update_item
            calls.write(call, **args)
            return
        calls.write(self.client.transact_write_items, TransactItems=ops)

    def adopt(self, user_id: str, sources: Sequence[str], now: datetime) -> None:
        """One consistent read of the records, one update of the user's on the version read: its
        sends and last sends merged in, the sources' unsubscribes ADDed to its own."""
        items = calls.batch_get(
            self.client, self.table, [_key(f"USER#{u}", DELIVERY) for u in [user_id, *sources]]
        )
        by_user: dict[str, tuple[DeliveryRecord, int]] = {}
        for item in items:
            value = codec.decode(item["rec"]["B"], DeliveryRecord) if "rec" in item else DeliveryRecord()
            value.unsubscribed = set(item.get("unsub", {}).get("SS", []))
            by_user[item["pk"]["S"].removeprefix("USER#")] = (value, int(item.get("v", {}).get("N", "0")))
        record, version = by_user.get(user_id, (DeliveryRecord(), 0))
        for source in sources:
            record = record.absorb(by_user.get(source, (DeliveryRecord(), 0))[0], source)
        values: dict[str, Any] = {
            ":new": {"N": str(version + 1)},
            ":rec": {"B": codec.encode(record.model_copy(update={"unsubscribed": set()}))},
        }
        if version:
            values[":old"] = {"N": str(version)}
        lifetime, condition = self._lifetime(
            record.unsubscribed, now, "v = :old" if version else "attribute_not_exists(v)", values
        )
        expression = "SET v = :new, rec = :rec" + lifetime
        if record.unsubscribed:
            expression += " ADD unsub :unsub"
            values[":unsub"] = {"SS": sorted(record.unsubscribed)}
        calls.write(
            self.client.update_item,
            TableName=self.table,
            Key=_key(f"USER#{user_id}", DELIVERY),
            UpdateExpression=expression,
            ConditionExpression=condition,
            ExpressionAttributeValues=values,
        )

    def get(self, subject: str, decision_id: str) -> LedgerEntry | None:
        response = calls.read(
            self.client.get_item,
            TableName=self.table,
            Key=_key(subject, DECISION + decision_id),
            ConsistentRead=True,
        )
        item = response.get("Item")
        return entry_of(item) if item else None

    def move(
        self,
        subject: str,
        decision_id: str,
        expected: Iterable[Status],
        status: Status,
        now: datetime,
        *,
        outcome: Outcome | None = None,
        reason: str | None = None,
        provider_id: str | None = None,
    ) -> LedgerEntry | None:
        allowed = sorted(set(expected))
        names = {"#status": "status"}
        values: dict[str, Any] = {":status": {"S": status}, ":now": {"S": now.isoformat()}}
        sets = ["#status = :status", "updated_at = :now"]
        for name, value in (("outcome", outcome), ("reason", reason), ("provider_id", provider_id)):
            if value is not None:
                names[f"#{name}"] = name
                values[f":{name}"] = {"S": value}
                sets.append(f"#{name} = :{name}")
        for index, state in enumerate(allowed):
            values[f":e{index}"] = {"S": state}
        condition = f"#status IN ({', '.join(f':e{i}' for i in range(len(allowed)))})"
        response = calls.conditional(
            self.client.update_item,
            TableName=self.table,
            Key=_key(subject, DECISION + decision_id),
            UpdateExpression="SET " + ", ".join(sets),
            ConditionExpression=f"attribute_exists(pk) AND {condition}",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
            ReturnValues="ALL_NEW",
        )
        if response is None:
            return None
        return entry_of(response["Attributes"])

    def record_feedback(self, subject: str, decision_id: str, kind: str, at: datetime) -> LedgerEntry | None:
        """Note `kind` on the decision's entry (its first time stays); None when there is no such
        entry (erased, expired, or never this stack's)."""
        response = calls.conditional(
            self.client.update_item,
            TableName=self.table,
            Key=_key(subject, DECISION + decision_id),
            UpdateExpression="SET #fb = if_not_exists(#fb, :at)",
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeNames={"#fb": FEEDBACK + kind},
            ExpressionAttributeValues={":at": {"S": at.isoformat()}},
            ReturnValues="ALL_NEW",
        )
        if response is None:
            return None
        return entry_of(response["Attributes"])

    def entries_of(self, user_id: str) -> list[LedgerEntry]:
        items = self._query(f"USER#{user_id}", DECISION)
        return sorted((entry_of(i) for i in items), key=lambda e: (e.recorded_at, e.decision_id))

    def unsubscribe(self, user_id: str, scope: str, now: datetime) -> None:
        calls.write(
            self.client.update_item,
            TableName=self.table,
            Key=_key(f"USER#{user_id}", DELIVERY),
            # Never forgotten by TTL while it holds an unsubscribe (see the module's docstring).
            UpdateExpression="ADD unsub :scope SET unsubscribed_at = :now REMOVE expires_at",
            ExpressionAttributeValues={":scope": {"SS": [scope]}, ":now": {"S": now.isoformat()}},
        )

    def handle_escalation(self, account_id: str, by: str, now: datetime) -> bool:

        response = calls.read(
            self.client.get_item,
            TableName=self.table,
            Key=_key(f"ACCOUNT#{account_id}", ESCALATION),
            ConsistentRead=True,
        )
        item = response.get("Item")
        if not item:
            return False
        escalation = Escalation.model_validate_json(item["esc"]["S"])
        if escalation.handled_at is not None:
            return False
        handled = escalation.model_copy(update={"handled_at": now, "handled_by": by})
        try:
            calls.write(
                self.client.put_item,
                TableName=self.table,
                Item={
                    **_key(f"ACCOUNT#{account_id}", ESCALATION),
                    "v": {"N": str(int(item["v"]["N"]) + 1)},
                    "status": {"S": "handled"},
                    "esc": {"S": handled.model_dump_json()},
                },
                ConditionExpression="v = :old",
                ExpressionAttributeValues={":old": item["v"]},
            )
        except StateConflict:
            return self.handle_escalation(account_id, by, now)
        return True

    def erase_user(self, user_id: str) -> int:
        items = self._query(f"USER#{user_id}", "")
        return calls.batch_delete(self.client, self.table, [_key(i["pk"]["S"], i["sk"]["S"]) for i in items])

    def scan_entries(self, updated_after: datetime | None = None) -> list[LedgerEntry]:
        """Every decision entry, users' and accounts' (a Scan: for reports and the local stack,
        never on a hot path); only those updated after `updated_after` if given."""
        args: dict[str, Any] = {
            "TableName": self.table,
            "FilterExpression": "begins_with(sk, :prefix)",
            "ExpressionAttributeValues": {":prefix": {"S": DECISION}},
        }
        if updated_after is not None:
            # ISO 8601 in UTC with the same offset everywhere: strings compare as times.
            args["FilterExpression"] += " AND updated_at > :after"
            args["ExpressionAttributeValues"][":after"] = {"S": updated_after.isoformat()}
        entries: list[LedgerEntry] = []
        while True:
            response = calls.read(self.client.scan, **args)
            entries += [entry_of(item) for item in response.get("Items", [])]
            last = response.get("LastEvaluatedKey")
            if not last:
                return sorted(entries, key=lambda e: (e.recorded_at, e.decision_id))
            args["ExclusiveStartKey"] = last

    def _query(self, pk: str, prefix: str) -> list[dict[str, Any]]:
        args: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)" if prefix else "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": pk}, **({":prefix": {"S": prefix}} if prefix else {})},
            "ConsistentRead": True,
        }
        items: list[dict[str, Any]] = []
        while True:
            response = calls.read(self.client.query, **args)
            items += response.get("Items", [])
            last = response.get("LastEvaluatedKey")
            if not last:
                return items
            args["ExclusiveStartKey"] = last

    # -- customer success (services.escalations): the escalations, and the note left on handling

    @staticmethod
    def _stored_escalation(item: dict[str, Any]) -> tuple[str, Versioned[Escalation], str]:
        return (
            item["pk"]["S"].removeprefix("ACCOUNT#"),
            Versioned(Escalation.model_validate_json(item["esc"]["S"]), int(item["v"]["N"])),
            item.get("note", {}).get("S", ""),
        )

    def escalation_of(self, account_id: str) -> tuple[Versioned[Escalation], str] | None:
        """The account's escalation (open or handled) and the note left when it was handled."""
        response = calls.read(
            self.client.get_item,
            TableName=self.table,
            Key=_key(f"ACCOUNT#{account_id}", ESCALATION),
            ConsistentRead=True,
        )
        item = response.get("Item")
        if not item:
            return None
        _, stored, note = self._stored_escalation(item)
        return stored, note

    def list_escalations(self) -> list[tuple[str, Escalation, str]]:
        """Every account's escalation, open or handled: (account id, escalation, handling note).

        A Scan filtered to the ESCALATION items: it reads the whole table (decisions included),
        so it is for the CS view and the local stack, never for a hot path."""
        args: dict[str, Any] = {
            "TableName": self.table,
            "FilterExpression": "sk = :sk",
            "ExpressionAttributeValues": {":sk": {"S": ESCALATION}},
            "ProjectionExpression": "pk, v, esc, note",
        }
        found: list[tuple[str, Escalation, str]] = []
        while True:
            response = calls.read(self.client.scan, **args)
            for item in response.get("Items", []):
                account, stored, note = self._stored_escalation(item)
                found.append((account, stored.value, note))
            last = response.get("LastEvaluatedKey")
            if not last:
                return sorted(found, key=lambda f: f[0])
            args["ExclusiveStartKey"] = last

    def handle_escalation_noted(
        self, account_id: str, decision_id: str, by: str, note: str, now: datetime, *, attempts: int = 5
    ) -> Escalation | None:
        """Mark the account's escalation `decision_id` handled by `by`, keeping `note` with it (a
        version-checked update). The handled escalation; None when that is not the account's
        escalation or it was handled already."""
        for _ in CONTENTION.with_attempts(attempts).tries():
            found = self.escalation_of(account_id)
            if found is None:
                return None
            stored, _ = found
            if stored.value.decision_id != decision_id or stored.value.handled_at is not None:
                return None
            handled = stored.value.model_copy(update={"handled_at": now, "handled_by": by})
            response = calls.conditional(
                self.client.update_item,
                TableName=self.table,
                Key=_key(f"ACCOUNT#{account_id}", ESCALATION),
                UpdateExpression="SET v = :new, #status = :handled, esc = :esc, note = :note",
                ConditionExpression="v = :old",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={
                    ":old": {"N": str(stored.version)},
                    ":new": {"N": str(stored.version + 1)},
                    ":handled": {"S": "handled"},
                    ":esc": {"S": handled.model_dump_json()},
                    ":note": {"S": note},
                },
            )
            if response is not None:
                return handled

        raise StateConflict(f"escalation of {account_id} kept changing")
