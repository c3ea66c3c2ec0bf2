"""What ingest costs: CPU per event (validate + fold), and DynamoDB requests and units per event.

Each measurement takes the same SDK-sized /v1/batch bodies (JSON strings) from bench.sample.
"""

from __future__ import annotations

import gc
import json
import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from bench.sample import Body
from bench.units import Meter, Tally
from nudge.adapters.memory import MemoryUsageStore
from nudge.domain.fold import FoldWindow, fold
from nudge.entrypoints.http.body import load_json
from nudge.model.messages import Batch, InvalidMessage, Message
from nudge.model.numbers import request_scope
from nudge.model.state import UserState
from nudge.rulebook.plan import TrackingPlan
from nudge.services.ingest import ingest

ROOT = Path(__file__).resolve().parent.parent


# -- the baseline: plain pydantic models of the same Segment messages, no custom validation ----


class PlainMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    userId: str | None = None
    anonymousId: str | None = None
    messageId: str | None = None
    timestamp: datetime | None = None
    context: dict[str, Any] = Field(default_factory=dict)
    integrations: dict[str, Any] = Field(default_factory=dict)


class PlainTrack(PlainMessage):
    type: Literal["track"] = "track"
    event: str
    properties: dict[str, Any] = Field(default_factory=dict)


class PlainPage(PlainMessage):
    type: Literal["page"] = "page"
    name: str | None = None
    properties: dict[str, Any] = Field(default_factory=dict)


class PlainScreen(PlainMessage):
    type: Literal["screen"] = "screen"
    name: str | None = None
    properties: dict[str, Any] = Field(default_factory=dict)


class PlainUserTraits(BaseModel):
    model_config = ConfigDict(extra="allow")

    email: str | None = None
    phone: str | None = None
    plan: str | None = None
    timezone: str | None = None
    locale: str | None = None
    consent: dict[str, bool] | None = None


class PlainIdentify(PlainMessage):
    type: Literal["identify"] = "identify"
    traits: PlainUserTraits = Field(default_factory=PlainUserTraits)


class PlainAccountTraits(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str | None = None
    plan: str | None = None
    mrr: float | None = None
    seats: int | None = None
    cs_owner: str | None = None


class PlainGroup(PlainMessage):
    type: Literal["group"] = "group"
    groupId: str
    traits: PlainAccountTraits = Field(default_factory=PlainAccountTraits)


PlainAny = Annotated[
    PlainTrack | PlainIdentify | PlainGroup | PlainPage | PlainScreen, Field(discriminator="type")
]


class PlainBatch(BaseModel):
    model_config = ConfigDict(extra="allow")

    batch: list[PlainAny]
    context: dict[str, Any] = Field(default_factory=dict)
    integrations: dict[str, Any] = Field(default_factory=dict)
    sentAt: datetime | None = None


# -- CPU: events per second on one core ------------------------------------------------------


@dataclass(frozen=True)
class Throughput:
    name: str
    events: int
    seconds: float  # CPU seconds of this process, the best of the repeats

    @property
    def per_second(self) -> float:
        return self.events / self.seconds


def parse_only(bodies: list[Body], plan: TrackingPlan, now: datetime) -> int:
    return sum(len(json.loads(body.json)["batch"]) for body in bodies)


def plain_validate(bodies: list[Body], plan: TrackingPlan, now: datetime) -> int:
    return sum(len(PlainBatch.model_validate(json.loads(body.json)).batch) for body in bodies)


def read_batch(text: str) -> Batch:
    """A body validated as the ingest handler does it: read by `load_json`, whose watch of its
    numbers spares walking the messages for them when none could be out of range, then `Batch`."""
    with request_scope():
        return Batch.model_validate(load_json(text))


def our_validate(bodies: list[Body], plan: TrackingPlan, now: datetime) -> int:
    events = 0
    for body in bodies:
        batch = read_batch(body.json)
        events += sum(1 for message in batch.batch if not isinstance(message, InvalidMessage))
    return events


def validate_and_fold(bodies: list[Body], plan: TrackingPlan, now: datetime) -> int:
    """The core of what the ingest Lambda does per request: parse, validate, group, fold.

    Each profile's state is carried from batch to batch, as the store would give it back.
    """
    states: dict[str, UserState] = {}
    window = FoldWindow()
    events = 0
    for body in bodies:
        batch = read_batch(body.json)
        by_user: dict[str, list[Message]] = defaultdict(list)
        for message in batch.batch:
            if not isinstance(message, InvalidMessage):
                by_user[message.identity].append(message)
                events += 1
        for user_id, messages in by_user.items():
            states[user_id] = fold(states.get(user_id), user_id, messages, plan, now, window)
    return events


def validate_and_ingest(bodies: list[Body], plan: TrackingPlan, now: datetime) -> int:
    """All the ingest Lambda does per request short of DynamoDB: parse, validate, then the ingest
    service itself (checks, identity resolution and merges, fold, rollup deltas) on the in-memory
    store, which gives each person's state back from batch to batch as DynamoDB would."""
    store = MemoryUsageStore()
    events = 0
    for body in bodies:
        batch = read_batch(body.json)
        messages = [(i, m) for i, m in enumerate(batch.batch) if not isinstance(m, InvalidMessage)]
        events += ingest(messages, plan, store, now).accepted
    return events


Step = Callable[[list[Body], TrackingPlan, datetime], int]
STEPS: list[tuple[str, Step]] = [
    ("json.loads only", parse_only),
    ("json.loads + plain pydantic (baseline)", plain_validate),
    ("json.loads + Batch (our lenient models)", our_validate),
    ("json.loads + Batch + group + fold (ours)", validate_and_fold),
    ("json.loads + Batch + ingest service, merges (ours)", validate_and_ingest),
]


def throughput(bodies: list[Body], plan: TrackingPlan, now: datetime, repeats: int) -> list[Throughput]:
    """Time each step over all bodies, `repeats` times round-robin; keep each step's best time.
    The ingest service's row runs after the others, in its own rounds: the heap its in-memory
    store leaves behind would otherwise weigh on the steps compared with the baseline.

    Time is this process's CPU time (time.process_time), so other processes sharing the
    machine slow the figures less than they would wall-clock time; the steps are single-threaded.
    """
    best: dict[str, float] = {}
    counts: dict[str, int] = {}
    for group in (STEPS[:-1], STEPS[-1:]):
        for _ in range(repeats):
            for name, step in group:
                gc.collect()
                started = time.process_time()
                counts[name] = step(bodies, plan, now)
                elapsed = time.process_time() - started
                best[name] = min(best.get(name, elapsed), elapsed)
    return [Throughput(name, counts[name], best[name]) for name, _ in STEPS]


# -- DynamoDB: requests and units per event, against moto ------------------------------------

TABLE = "nudge-usage-bench"
TEMPLATE_TABLE = "UsageTable"


@dataclass
class Phase:
    name: str
    events: int
    ingest_requests: int
    floor_requests: int  # sum over ingest requests of the distinct users in it
    tally: Tally
    seconds: float


@dataclass
class DynamoRun:
    table_source: str
    phases: list[Phase] = field(default_factory=list)


def dynamo_writes(bodies: list[Body], plan: TrackingPlan, rollup_every: int = 1) -> DynamoRun:
    """Run the real ingest service on DynamoUsageStore against moto, posting every body twice.

    Each body is ingested at the time it reaches the API (its last message + the SDK's flush
    delay), then posted again at once, as an SDK retries a request whose answer it lost. The
    two posts are counted apart: the first is what ingest costs, the second what a retry costs.
    The rollup function gets the stream's records every `rollup_every` requests (1: each request's
    own batch; the quiet stream's is bench.rollup_stream.quiet_requests_per_batch(); more: a busy
    one, whose batches span many requests).
    """
    import boto3
    from moto import mock_aws

    from bench.rollup_stream import RollupPump
    from nudge.adapters.dynamo.usage import DynamoUsageStore

    with _fake_aws_env(), mock_aws(), _no_table_backup_per_transaction():
        client = boto3.client("dynamodb", region_name="us-east-1")
        source = _create_table(client)
        meter = Meter(kind_of=item_kind)
        meter.attach(client)
        store = DynamoUsageStore(client, TABLE)
        # The rollup function on the table's stream: one batch per request (as section 8 forms
        # the stream's batches), its writes counted with the request's.
        rollups = RollupPump(client, boto3.client("dynamodbstreams", region_name="us-east-1"), TABLE)
        first = Phase("first post", 0, 0, 0, Tally(), 0.0)
        again = Phase("posted twice", 0, 0, 0, Tally(), 0.0)
        for n, body in enumerate(bodies, 1):
            for phase in (first, again):
                meter.tally = phase.tally
                started = time.perf_counter()
                messages = _post(body, plan, store)
                # A request posted again writes nothing, so nothing of it reaches the stream.
                if phase is first and (n % rollup_every == 0 or n == len(bodies)):
                    rollups.pump()
                phase.seconds += time.perf_counter() - started
                phase.events += len(messages)
                phase.ingest_requests += 1
                phase.floor_requests += len({message.identity for message in messages})
        for phase in (first, again):
            if phase.tally.failed_requests:
                raise RuntimeError(f"{phase.tally.failed_requests} DynamoDB requests failed ({phase.name})")
        return DynamoRun(source, [first, again])


def item_kind(key: dict[str, Any]) -> str:
    """The kind of a usage-table item, from its key (see nudge.adapters.dynamo.usage)."""
    pk, sk = key["pk"]["S"], key["sk"]["S"]
    if pk.startswith("USER#"):
        return "user state"
    if sk == "TRAITS":
        return "account traits"
    if sk.startswith("ROLLUP#"):
        return "account rollup shard"
    if sk.startswith("WEEK#"):
        return "account rollup, week shard"
    if sk.startswith("FEATURES#"):
        return "account rollup, features shard"
    if pk.startswith("ROLLUPRUN#"):
        return "rollup batch marker"
    return "other"


def _post(body: Body, plan: TrackingPlan, store: Any) -> list[Message]:
    """What the /v1/batch handler does with one body: validate, then ingest the valid messages."""
    batch = Batch.model_validate(json.loads(body.json))
    messages = [(i, m) for i, m in enumerate(batch.batch) if not isinstance(m, InvalidMessage)]
    result = ingest(messages, plan, store, body.received)
    if result.errors:
        raise RuntimeError(f"sample messages refused: {result.errors[:3]}")
    return [message for _, message in messages]


@contextmanager
def _no_table_backup_per_transaction() -> Iterator[None]:
    """Keep moto from deep-copying the whole table for every item of every transaction.

    moto's transact_write_items backs each table up with copy.deepcopy, once per item, so a
    transaction costs O(table size) and a replay O(n^2): minutes for a few thousand events. The
    backup only serves to roll back a failed transaction; this benchmark has a single writer and
    checks that no request failed, so the copy is skipped (the table object is its own backup).
    """
    import copy
    from unittest import mock

    import moto.dynamodb.models as models
    from moto.dynamodb.models.table import Table

    class _Copy:
        @staticmethod
        def deepcopy(value: Any, memo: dict[int, Any] | None = None) -> Any:
            return value if isinstance(value, Table) else copy.deepcopy(value, memo)

    with mock.patch.object(models, "copy", _Copy):
        yield


def _create_table(client: Any) -> str:
    """The usage table exactly as template.yaml declares it (keys, billing, stream)."""
    from nudge.tools.local.template import table_create_kwargs

    client.create_table(**table_create_kwargs(ROOT / "template.yaml", TEMPLATE_TABLE, TABLE))
    return f"{TEMPLATE_TABLE} from template.yaml (nudge.tools.local.template.table_create_kwargs)"


@contextmanager
def _fake_aws_env() -> Iterator[None]:
    """moto's stand-in credentials and region, restored afterwards."""
    fake = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    saved = {name: os.environ.get(name) for name in fake}
    os.environ.update(fake)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def fixed_now(bodies: list[Body]) -> datetime:
    """A `now` just after the last event, for the CPU benchmark (every message is then valid)."""
    return max(body.received for body in bodies) + timedelta(minutes=1)
