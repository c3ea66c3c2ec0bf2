"""Make moto's reads cost what DynamoDB's do, for the local stack (``speed_up_moto``).

``LocalStack.start`` applies these patches before it starts its moto server; what moto answers
does not change (tests/integration/test_moto_speedups.py compares). moto's transactions are made
cheap separately, by the server itself (``nudge.tools.local.moto_transactions``).
"""

from __future__ import annotations

import base64
import copy
import functools
import threading
from collections.abc import Iterator
from typing import Any

from moto import backends
from moto.core import responses as moto_responses
from moto.core.responses import BaseResponse
from moto.core.serialize import BaseJSONSerializer
from moto.dynamodb.models import table as table_module
from moto.dynamodb.models.table import Table

_moto_patch = threading.Lock()


def speed_up_moto() -> None:
    """Make moto's reads cost what DynamoDB's do, so the evaluator's reads don't dominate a replay.

    Measured on the 90-day demo, before: a Query on one account's rollup (about 200 small items)
    took 26 ms in moto, a GetRecords of 1,000 stream records 150 ms, and the evaluator and the
    sweep made 14,000 of those: most of the replay was moto. Two causes, both fixed here without
    changing what moto answers:

    * Query listed and sorted the whole table to keep one partition (O(table log table)), then
      deep-copied what it kept. A table Query now starts from moto's own dict of the partition,
      an index Query from the table's items unsorted (moto sorts what matched anyway), and the
      copy is skipped: what follows (projections, filters, the response) only reads the items.
    * moto 5 serializes responses by walking the botocore shape of every attribute value. An
      AttributeValue (DynamoDB's and its stream's) is already in its wire form but for binary
      values, so it is now written out directly, base64 as the shape walk does it.
    * moto's server lists its own package directory (a listdir and 200 isdir calls) on every
      request to match the Host header against service names; the list is now read once.
    * Every request listed its response class's methods (inspect.getmembers, a tenth of a
      PutItem's time in moto) to check the action exists; the list is now made once per class.
    * Every response body goes through a regex (with a look-behind) that puts the request id in
      XML bodies: 60 ms on a GetRecords of 1,000 records. It now runs only on bodies that have a
      <RequestId> element to fill.

    Key conditions, filters, paging, projections and errors are still moto's own code. The query
    patch swaps per-call state, which is safe because the local server runs one request at a
    time (LockedMotoServer). Idempotent.
    """
    with _moto_patch:
        _patch_query()
        _patch_attribute_value_serializer()
        _cache_moto_modules()
        _skip_xml_request_id_on_json()
        _cache_method_names()


def _patch_query() -> None:

    if getattr(Table.query, "_nudge_local", False):
        return
    original = Table.query

    class _NoDeepCopy:
        """Stands for the `copy` module inside Table.query: the results list is copied, not the items."""

        @staticmethod
        def deepcopy(value: Any) -> Any:
            return list(value) if isinstance(value, list) else copy.deepcopy(value)

    def query(self: Any, hash_key: Any, *args: Any, **kwargs: Any) -> Any:
        # index_name is the 8th positional parameter of Table.query (moto 5.x), or a keyword.
        index_name = args[6] if len(args) > 6 else kwargs.get("index_name")
        candidates: list[Any]
        if index_name is None and hash_key is not None:
            # .get: moto keeps a defaultdict, and indexing it would create the partition.
            partition = self.items.get(hash_key)
            if partition is None:
                candidates = []
            elif self.range_key_attr:
                candidates = list(partition.values())
            else:
                candidates = [partition]
        else:
            candidates = [
                item
                for hash_set in self.items.values()
                for item in (hash_set.values() if self.range_key_attr else (hash_set,))
            ]
        # An instance attribute shadows the method for this one call.
        self.all_items = lambda: candidates
        table_module.copy = _NoDeepCopy  # type: ignore[attr-defined,assignment]
        try:
            return original(self, hash_key, *args, **kwargs)
        finally:
            table_module.copy = copy  # type: ignore[attr-defined]
            del self.all_items

    query._nudge_local = True  # type: ignore[attr-defined]
    query.__wrapped__ = original  # type: ignore[attr-defined]
    Table.query = query  # type: ignore[method-assign]


def _patch_attribute_value_serializer() -> None:

    if getattr(BaseJSONSerializer._serialize_type_structure, "_nudge_local", False):
        return
    original = BaseJSONSerializer._serialize_type_structure

    def serialize_structure(self: Any, serialized: Any, value: Any, shape: Any, key: str) -> None:
        if key and shape.name == "AttributeValue":
            wire = _attribute_value_wire(value)
            if wire is not None:
                # What _default_serialize does with the structure the shape walk would build.
                serialized[self.get_serialized_name(shape, key)] = wire
                return
        original(self, serialized, value, shape, key)

    serialize_structure._nudge_local = True  # type: ignore[attr-defined]
    serialize_structure.__wrapped__ = original  # type: ignore[attr-defined]
    BaseJSONSerializer._serialize_type_structure = serialize_structure  # type: ignore[method-assign]


def _cache_moto_modules() -> None:

    if getattr(backends.list_of_moto_modules, "_nudge_local", False):
        return
    original = backends.list_of_moto_modules
    modules = tuple(original())

    def list_of_moto_modules() -> Iterator[str]:
        return iter(modules)

    list_of_moto_modules._nudge_local = True  # type: ignore[attr-defined]
    list_of_moto_modules.__wrapped__ = original  # type: ignore[attr-defined]
    backends.list_of_moto_modules = list_of_moto_modules


def _skip_xml_request_id_on_json() -> None:

    current = BaseResponse.__dict__["_enrich_response"]
    if getattr(current, "_nudge_local", False):
        return
    original = current.__func__

    def enrich_response(headers: dict[str, str], body: Any) -> tuple[dict[str, str], Any]:
        # The regex can only change a text body holding the element (on bytes it raises, and
        # the original ignores that).
        if isinstance(body, str) and "<RequestId>" in body:
            return original(headers, body)  # type: ignore[no-any-return]
        # Everything else the original does: the status as text and the request id header.
        return original(headers, "")[0], body

    enrich_response._nudge_local = True  # type: ignore[attr-defined]
    enrich_response.__wrapped__ = original  # type: ignore[attr-defined]
    BaseResponse._enrich_response = staticmethod(enrich_response)  # type: ignore[method-assign]


def _cache_method_names() -> None:

    current = moto_responses.method_names_from_class  # type: ignore[attr-defined]
    if getattr(current, "_nudge_local", False):
        return
    original = current

    # A response class's functions are fixed once it is defined: one list per class.
    @functools.cache
    def method_names_from_class(clazz: object) -> list[str]:
        return list(original(clazz))

    method_names_from_class._nudge_local = True  # type: ignore[attr-defined]
    moto_responses.method_names_from_class = method_names_from_class  # type: ignore[attr-defined]


def _b64(value: str | bytes) -> str:
    # As moto's ResponseSerializer._base64: text is encoded first.
    raw = value.encode("utf-8") if isinstance(value, str) else value
    return base64.b64encode(raw).strip().decode("utf-8")


def _attribute_value_wire(value: Any) -> dict[str, Any] | None:
    """An AttributeValue in its JSON wire form, as moto's shape walk writes it; None when it is not
    a plain one (then the shape walk does it)."""
    if not isinstance(value, dict) or len(value) != 1:
        return None
    ((kind, inner),) = value.items()
    if inner is None:
        return None
    if kind in ("S", "N"):
        # The shape walk's string rule: str() of anything but an empty list or dict.
        return {kind: inner if inner in ([], {}) else str(inner)}
    if kind == "B" and isinstance(inner, str | bytes):
        return {kind: _b64(inner)}
    if kind in ("BOOL", "NULL"):
        return {kind: inner}
    if kind in ("SS", "NS") and isinstance(inner, list):
        return {kind: [str(v) for v in inner]}
    if kind == "BS" and isinstance(inner, list):
        return {kind: [_b64(v) for v in inner]}
    if kind == "M" and isinstance(inner, dict):
        members: dict[str, Any] = {}
        for name, member in inner.items():
            wired = _attribute_value_wire(member)
            if wired is None:
                return None
            members[name] = wired
        return {kind: members}
    if kind == "L" and isinstance(inner, list):
        items: list[Any] = []
        for member in inner:
            wired = _attribute_value_wire(member)
            if wired is None:
                return None
            items.append(wired)
        return {kind: items}
    return None
