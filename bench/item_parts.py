"""Where a user item's bytes go: `python -m bench.item_parts` (BENCHMARKS.md section 3).

Replays section 3's slice (the first 20,000 sample messages in bodies of 100) through the ingest
service on the in-memory store, keeps every user state it writes (as the DynamoDB store would write
it: the same states, in the same order), and breaks the items down:

- by attribute (name + value, as DynamoDB sizes them), with the WCU each write would cost alone;
- the state blob by top-level field: each field's share of the deflated blob, measured as what the
  blob grows by when the field is added to the JSON before it (in the order the codec writes them),
  so the shares add up to the blob; dedupe digests stored raw (format 2) count as they are;
- by kind of value across fields: what the blob would shrink by without it (times, the message
  ids of traits, dedupe digests).

It reads the codec of whichever Nudge is on the path (run it with PYTHONPATH on another checkout for
a before/after), and writes nothing.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
import zlib
from binascii import a2b_base64
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

from bench import sample
from bench.ingest import _post
from nudge.adapters.dynamo import codec
from nudge.adapters.dynamo.usage import DynamoUsageStore
from nudge.adapters.memory import MemoryUsageStore
from nudge.model.state import RollupDelta, UserState
from nudge.rulebook.plan import load_plan

ROOT = Path(__file__).resolve().parent.parent
KB = 1024

# Values as the blob's JSON writes them (ISO or epoch milliseconds), a trait's message id, the dedupe map.
_ISO = re.compile(rb'"\d{4}-\d\d-\d\dT[0-9:.]+(?:Z|[+-]\d\d:\d\d)"')
_EPOCH_MS = re.compile(rb"(?<![\d.])1[5-9]\d{11}(?![\d.])")
_MID = re.compile(rb'"mid":"[^"]*"')
_SEEN = re.compile(rb'"seen":\{[^}]*\}')
KINDS: dict[str, Callable[[bytes], bytes]] = {
    "times (ISO or epoch ms)": lambda t: _EPOCH_MS.sub(b"0", _ISO.sub(b'""', t)),
    "traits' message ids (mid)": lambda t: _MID.sub(b'"mid":""', t),
    "dedupe digests (seen), base64 in the JSON": lambda t: _SEEN.sub(b'"seen":{}', t),
}


class _Recording(MemoryUsageStore):
    """The in-memory store, keeping each state written with its rollup delta and time."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[tuple[UserState, RollupDelta | None, datetime]] = []

    def save_user(
        self,
        state: UserState,
        version: int,
        rollup: RollupDelta | None,
        now: datetime,
        correlation_id: str = "",
        absorbed: Sequence[tuple[str, int]] = (),
    ) -> None:
        self.written.append((state, rollup, now))
        super().save_user(state, version, rollup, now, correlation_id, absorbed)


def written_states(messages: int) -> list[tuple[UserState, RollupDelta | None, datetime]]:
    plan = load_plan(ROOT / "rules")
    store = _Recording()
    for body in sample.batches(sample.sample_messages(messages)):
        _post(body, plan, store)
    return store.written


def _format(blob: bytes) -> tuple[bytes, Callable[[UserState], bytes], int]:
    """The dictionary, the text the codec deflated for a state, and the raw bytes after it."""
    if blob[:1] == b"\x02":
        dump = lambda s: s.model_dump_json(exclude={"seen"}, context={"epoch_ms": True}).encode()  # noqa: E731
        return codec.DICTIONARY_2, dump, 1  # type: ignore[attr-defined,unused-ignore]
    return codec.DICTIONARY, lambda s: s.model_dump_json().encode(), 0


def _deflated(text: bytes, dictionary: bytes) -> int:
    deflater = zlib.compressobj(codec.LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS, zdict=dictionary)
    return len(deflater.compress(text) + deflater.flush())


def breakdown(written: list[tuple[UserState, RollupDelta | None, datetime]]) -> str:
    store = DynamoUsageStore(None, "bench")  # type: ignore[arg-type]  # builds items, never calls AWS
    attributes: Counter[str] = Counter()
    parts: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    sizes: list[int] = []
    blobs: list[int] = []
    for state, rollup, now in written:
        # No correlation id, as section 3's bench ingests (the API's request id adds `corr`, 40 B).
        item = store._state_item(state, 1, now, "", rollup)
        sizes.append(codec.item_bytes(item))
        for name, value in item.items():
            attributes[name] += len(name.encode()) + codec.value_bytes(value)
        blob = item["state"]["B"]
        blobs.append(len(blob))
        dictionary, dump, raw_digests = _format(blob)
        text = dump(state)
        fields = json.loads(text)
        grown = 1  # the format byte
        parts["(format byte)"] += 1
        for i, name in enumerate(fields):
            prefix = json.dumps(
                dict(list(fields.items())[: i + 1]), separators=(",", ":"), ensure_ascii=False
            )
            size = 1 + _deflated(prefix.encode(), dictionary)
            parts[name] += size - grown
            grown = size
        if raw_digests:
            rest = len(blob) - grown
            parts["seen (raw digests after the deflate stream, with their lengths)"] += rest
        whole = _deflated(text, dictionary)
        for kind, without in KINDS.items():
            kinds[kind] += whole - _deflated(without(text), dictionary)
        if raw_digests:
            kinds["dedupe digests (seen), raw after the stream"] += sum(
                len(a2b_base64(v)) for v in state.seen.values()
            )
    n = len(written)
    units = Counter(max(1, math.ceil(size / KB)) for size in sizes)
    lines = [
        f"user items written: {n:,} (section 3's slice, in memory); item bytes mean "
        f"{statistics.mean(sizes):,.0f}, p50 {statistics.median(sizes):,.0f}, "
        f"p90 {sorted(sizes)[int(n * 0.9)]:,}, max {max(sizes):,}; "
        f"state blob mean {statistics.mean(blobs):,.0f} B",
        f"  fit 1 KB (1 WCU): {units[1] / n:.0%}; "
        + ", ".join(f"{u} WCU: {units[u] / n:.0%}" for u in sorted(units) if u > 1)
        + f"; WCU per write alone: {sum(u * c for u, c in units.items()) / n:.2f}",
        "  item attributes (name + value), mean bytes:",
        *(f"    {name:<58} {total / n:8.1f}" for name, total in attributes.most_common()),
        "  state blob by field (what the deflated blob grows by as each is added), mean bytes:",
        *(f"    {name:<58} {total / n:8.1f}" for name, total in parts.most_common()),
        "  by kind of value (what the blob would shrink by without it), mean bytes:",
        *(f"    {name:<58} {total / n:8.1f}" for name, total in kinds.items()),
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=20_000, help="sample messages (section 3's slice)")
    args = parser.parse_args(argv)
    print(breakdown(written_states(args.messages)))


if __name__ == "__main__":
    main()
