"""DynamoDB requests and capacity units, counted the way DynamoDB bills them.

A `Meter` hooks a boto3 DynamoDB client (botocore events, so the code under test is untouched)
and counts every request by operation, and the write and read units each one costs:

- item size = sum over attributes of (name length in UTF-8 + value size); S: UTF-8 length,
  N: about 1 byte per 2 significant digits + 1, B: byte length, BOOL/NULL: 1, M/L: 3 + elements;
- a write costs ceil(size / 1 KB) per item, the size being the larger of the item before and
  after the write; items inside TransactWriteItems cost twice that;
- a strongly consistent read costs ceil(size / 4 KB) per item (at least 1, found or not) for
  GetItem and BatchGetItem; a Query costs ceil(sum of the sizes / 4 KB), at least 1.

The meter keeps a shadow of each item's size (by key), so a replacing Put is billed on the
larger of old and new, and an Update on the item as it is after the update. Updates here only
ADD, SET or REMOVE numbers, so the shadow keeps those numbers and sizes the item exactly.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nudge.adapters.dynamo.codec import item_bytes, number_bytes, value_bytes

KB = 1024
READ_UNIT_BYTES = 4 * KB
WRITE_OPERATIONS = ("PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem")
READ_OPERATIONS = ("GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems")


# The sizes DynamoDB counts are the ingest's own (its item bound): one implementation.
number_size = number_bytes
value_size = value_bytes
item_size = item_bytes


def write_units(size: int) -> int:
    return max(1, math.ceil(size / KB))


def read_units(size: int) -> int:
    return max(1, math.ceil(size / READ_UNIT_BYTES))


def _key_id(key: dict[str, Any]) -> tuple[str, ...]:
    return tuple(f"{name}={next(iter(value.values()))!s}" for name, value in sorted(key.items()))


@dataclass
class Tally:
    """Requests and units of one phase of a benchmark."""

    requests: Counter[str] = field(default_factory=Counter)
    write_units: int = 0
    read_units: int = 0
    failed_requests: int = 0
    # By kind of item (see Meter.kind_of): items written, write units, bytes, largest item.
    items: Counter[str] = field(default_factory=Counter)
    units: Counter[str] = field(default_factory=Counter)
    transaction_items: Counter[str] = field(default_factory=Counter)
    item_bytes: Counter[str] = field(default_factory=Counter)
    largest: Counter[str] = field(default_factory=Counter)

    @property
    def write_requests(self) -> int:
        return sum(self.requests[op] for op in WRITE_OPERATIONS)

    @property
    def read_requests(self) -> int:
        return sum(self.requests[op] for op in READ_OPERATIONS)


def _any_item(key: dict[str, Any]) -> str:
    return "item"


class Meter:
    """Counts the DynamoDB requests a client makes, and what they cost, into `tally`.

    Point `tally` at another Tally to count a phase apart. `kind_of(key)` names the kind of an
    item (e.g. "user state") so units can be broken down by kind.
    """

    def __init__(
        self, table_keys: tuple[str, ...] = ("pk", "sk"), kind_of: Callable[[dict[str, Any]], str] = _any_item
    ) -> None:
        self.table_keys = table_keys
        self.kind_of = kind_of
        self.tally = Tally()
        self.sizes: dict[tuple[str, ...], int] = {}
        self.numbers: dict[tuple[str, ...], dict[str, int]] = {}
        self._asked = 0

    def attach(self, client: Any) -> None:
        client.meta.events.register("provide-client-params.dynamodb.*", self._before)
        client.meta.events.register("after-call.dynamodb.*", self._after)

    # -- hooks -------------------------------------------------------------------------------
    def _before(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        operation = model.name
        self.tally.requests[operation] += 1
        if operation == "BatchGetItem":
            self._asked = sum(len(spec["Keys"]) for spec in params["RequestItems"].values())
        elif operation == "PutItem":
            self._put(params["Item"], factor=1)
        elif operation == "UpdateItem":
            self._update(params, factor=1)
        elif operation == "TransactWriteItems":
            # Transactional writes cost twice: DynamoDB prepares and then commits each item.
            for entry in params["TransactItems"]:
                if "Put" in entry:
                    self._put(entry["Put"]["Item"], factor=2)
                elif "Update" in entry:
                    self._update(entry["Update"], factor=2)
                else:  # ConditionCheck / Delete: billed as a write of the item's size
                    key = (entry.get("ConditionCheck") or entry.get("Delete") or {})["Key"]
                    self._charge(key, self.sizes.get(_key_id(key), 0), 0, factor=2)

    def _after(self, parsed: dict[str, Any], model: Any, **_: Any) -> None:
        operation = model.name
        if "Error" in parsed:
            self.tally.failed_requests += 1
            return
        if operation == "GetItem":
            item = parsed.get("Item")
            self.tally.read_units += read_units(item_size(item) if item else 0)
        elif operation == "BatchGetItem":
            found = [item for items in parsed.get("Responses", {}).values() for item in items]
            retried = sum(len(spec["Keys"]) for spec in (parsed.get("UnprocessedKeys") or {}).values())
            # A key that matches no item still costs one read unit.
            missing = self._asked - retried - len(found)
            self.tally.read_units += sum(read_units(item_size(item)) for item in found) + missing
        elif operation in ("Query", "Scan"):
            total = sum(item_size(item) for item in parsed.get("Items", []))
            self.tally.read_units += read_units(total)

    # -- shadow of item sizes ----------------------------------------------------------------
    def _put(self, item: dict[str, Any], factor: int) -> None:
        key = {name: item[name] for name in self.table_keys}
        size = item_size(item)
        self.numbers.pop(_key_id(key), None)
        self._charge(key, self.sizes.get(_key_id(key), 0), size, factor)

    def _update(self, update: dict[str, Any], factor: int) -> None:
        """An `ADD a :x, b :y SET c = :z REMOVE d` on numbers: the item after it holds those
        attributes, less the removed ones."""
        key = update["Key"]
        numbers = self.numbers.setdefault(_key_id(key), {})
        names = update.get("ExpressionAttributeNames", {})
        values = update.get("ExpressionAttributeValues", {})
        for action, clause in _clauses(update["UpdateExpression"]):
            if action == "REMOVE":
                numbers.pop(names.get(clause, clause), None)
                continue
            name, placeholder = clause.replace("=", " ").split()
            attribute = names.get(name, name)
            value = int(values[placeholder]["N"])
            numbers[attribute] = numbers.get(attribute, 0) + value if action == "ADD" else value
        after = item_size(key) + sum(len(name.encode()) + number_size(str(n)) for name, n in numbers.items())
        self._charge(key, self.sizes.get(_key_id(key), 0), after, factor)

    def _charge(self, key: dict[str, Any], before: int, after: int, factor: int) -> None:
        """A write is billed on the larger of the item before and after it."""
        kind = self.kind_of(key)
        units = factor * write_units(max(before, after))
        self.sizes[_key_id(key)] = after
        t = self.tally
        t.write_units += units
        t.units[kind] += units
        t.items[kind] += 1
        t.item_bytes[kind] += after
        t.largest[kind] = max(t.largest[kind], after)
        if factor == 2:
            t.transaction_items[kind] += 1


def _clauses(expression: str) -> list[tuple[str, str]]:
    """`ADD a :x, b :y SET c = :z REMOVE d` -> [("ADD", "a :x"), ("ADD", "b :y"), ("SET", "c = :z"),
    ("REMOVE", "d")]."""
    clauses: list[tuple[str, str]] = []
    action = ""
    for word in expression.replace(",", " , ").split():
        if word in ("ADD", "SET", "REMOVE"):
            action = word
            clauses.append((action, ""))
        elif word == ",":
            clauses.append((action, ""))
        else:
            clauses[-1] = (action, f"{clauses[-1][1]} {word}".strip())
    return [(action, clause) for action, clause in clauses if clause]
