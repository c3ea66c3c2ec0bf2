"""The embedded local stack: moto stands in for AWS, the real handlers run on a simulated clock.

``LocalStack`` starts an in-process moto server (one request at a time, see
``nudge.tools.local.aws``), points boto3 at it through environment variables, creates the
template's tables and the write-keys SecureString, installs a ``SimulatedClock`` and loads
the real handlers named by template.yaml's HttpApi events (``functions/ingest/app.py``
today). ``nudge.tools.local.http`` serves them over HTTP.

Write keys: the stack accepts the keys listed in the environment variable
``NUDGE_WRITE_KEYS`` (comma-separated, so a rotation can be tried locally); when it is
unset or empty the one key is ``nudge-local-write-key`` (``DEFAULT_WRITE_KEY``). Send it
as the HTTP Basic username, as Segment SDKs do, or as ``Authorization: Bearer <key>``.

Handlers run in "containers". A Lambda container serves one request at a time, and the
handlers rely on it: Powertools' resolver keeps the current event on a class attribute
and Metrics keeps one metric set per process. So, like Lambda:

* ``containers=0`` runs the handler in this process, one request at a time;
* ``containers=N`` runs N worker processes, each a container serving one request at a
  time, so N requests really run at once and race on the same user the way concurrent
  Lambdas do (conditional writes, retries, 503 when contention outlasts them). They also
  use a second core, which the in-process mode can't (one GIL for moto, server and handler).
"""

from __future__ import annotations

import base64
import copy
import importlib.util
import json
import multiprocessing.connection
import os
import re
import secrets
import signal
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parseaddr
from multiprocessing import get_context
from pathlib import Path
from types import ModuleType, TracebackType
from typing import TYPE_CHECKING, Any, Self

import boto3
import yaml
from aws_lambda_powertools.utilities import parameters
from moto import backends
from moto.core.responses import BaseResponse
from moto.core.serialize import BaseJSONSerializer
from moto.dynamodb.models import table as table_module
from moto.dynamodb.models.table import Table

from nudge import bootstrap, clock
from nudge.adapters.dynamo.ledger import DynamoLedger
from nudge.adapters.dynamo.segments import DynamoSegmentStore
from nudge.adapters.dynamo.snapshot import snapshot_from_tables
from nudge.adapters.dynamo.usage import DynamoUsageStore
from nudge.domain.report import build
from nudge.rulebook.ruleset import load_rules
from nudge.settings import Settings
from nudge.tools.local.aws import (
    ACCOUNT_ID,
    REGION,
    HandlerFailed,
    LockedMotoServer,
    create_queues,
    create_usage_resources,
    table_names,
)
from nudge.tools.local.outbox import outbox
from nudge.tools.local.pumps import (
    PumpStats,
    QueuePump,
    QueueTap,
    ScheduledFunction,
    StreamPump,
    queue_sources,
    schedule_sources,
    stream_sources,
)
from nudge.tools.local.template import TemplateError, load_template
from nudge.tools.report.html import render

if TYPE_CHECKING:
    import boto3
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_dynamodbstreams.client import DynamoDBStreamsClient
    from mypy_boto3_sqs.client import SQSClient

    from nudge.adapters.dynamo.ledger import DynamoLedger
    from nudge.adapters.dynamo.segments import DynamoSegmentStore
    from nudge.adapters.dynamo.usage import DynamoUsageStore
    from nudge.domain.report_model import ReportData
    from nudge.model.ledger import LedgerEntry
    from nudge.settings import Settings
    from nudge.tools.local.aws import LockedMotoServer
    from nudge.tools.local.pumps import (
        PumpStats,
        QueuePump,
        QueueTap,
        ScheduledFunction,
        ScheduledRun,
        StreamPump,
        TappedMessage,
    )

DEFAULT_WRITE_KEY = "nudge-local-write-key"
WRITE_KEYS_ENV = "NUDGE_WRITE_KEYS"
WRITE_KEYS_PARAM = "/nudge/local/write-keys"
USAGE_TABLE = "nudge-local-usage"
LEDGER_TABLE = "nudge-local-ledger"
UNSUBSCRIBE_SECRET_PARAM = "/nudge/local/unsubscribe-secret"  # noqa: S105 - a parameter name
DEFAULT_API_URL = "http://127.0.0.1:8080"
DEFAULT_TIMEOUT_SECONDS = 3
# Local queues are named <prefix>-<LogicalId>.
QUEUE_PREFIX = "nudge-local"
# Customer success reads escalations from this queue; locally nobody does, so the stack drains and
# keeps them (GET /_local/escalations). A queue listed here is read by the stack, not a function.
CS_QUEUE = "CsQueue"
TAPPED_QUEUES = (CS_QUEUE,)
# Template parameters the local stack sets rather than taking their Default, as
# `sam deploy --parameter-overrides` would. DueShards: the due index spreads a day's re-checks
# over 16 partitions in DynamoDB, but moto has no partitions and answers each index Query by
# reading the whole table, so the sweep's 16 queries per day cost 16 table reads for nothing.
LOCAL_PARAMETERS = {"DueShards": "1"}
# advance_clock moves the clock at most this far at a time (or a schedule's rate, if longer).
CATCH_UP_STEP = timedelta(days=1)
MAX_SETTLE_PASSES = 50

Handler = Callable[[dict[str, Any], Any], Any]


class ClockError(ValueError):
    """The simulated clock was asked to go backwards, or given a naive time."""


class SimulatedClock:
    """Simulated time for the local stack.

    It starts at the real time and runs at real speed, so a product app pointed at
    ``nudge serve`` sends timestamps the ingest API accepts; ``advance_to`` jumps it
    forward (the demo replays 90 days in minutes). It never goes backwards: state already
    folded at a later "now" (dedupe windows, kept weeks) would not make sense again.
    """

    def __init__(self, start: datetime | None = None) -> None:
        start = start if start is not None else datetime.now(UTC)
        _require_aware(start)
        self._lock = threading.Lock()
        self._base = start.astimezone(UTC)
        self._anchor = time.monotonic()

    def now(self) -> datetime:
        with self._lock:
            return self._base + timedelta(seconds=time.monotonic() - self._anchor)

    __call__ = now

    def advance_to(self, when: datetime) -> datetime:
        """Jump to `when` (timezone-aware, not before now) and return it."""
        _require_aware(when)
        with self._lock:
            current = self._base + timedelta(seconds=time.monotonic() - self._anchor)
            if when < current:
                raise ClockError(
                    f"the simulated clock only moves forward: it is {current.isoformat()}, "
                    f"{when.isoformat()} is earlier"
                )
            self._base = when.astimezone(UTC)
            self._anchor = time.monotonic()
            return self._base


def _require_aware(when: datetime) -> None:
    if when.tzinfo is None or when.utcoffset() is None:
        raise ClockError(f"{when.isoformat()} has no timezone; give one (e.g. 2026-01-05T09:00:00Z)")


def write_keys_from_env(environ: Mapping[str, str] | None = None) -> list[str]:
    """The keys in NUDGE_WRITE_KEYS, or [DEFAULT_WRITE_KEY] when it is unset or blank."""
    raw = (environ if environ is not None else os.environ).get(WRITE_KEYS_ENV, "")
    keys = [key.strip() for key in raw.split(",") if key.strip()]
    return keys or [DEFAULT_WRITE_KEY]


# ---------------------------------------------------------------------------- the template's API


@dataclass(frozen=True)
class FunctionCode:
    """A function of the template, as Lambda would load it: code directory and handler."""

    logical_id: str
    code_dir: Path
    module: str
    attribute: str
    timeout_seconds: int = DEFAULT_TIMEOUT_SECONDS
    memory_mb: int = 128


@dataclass(frozen=True)
class Route:
    """One HttpApi event: `METHOD /path` (with {param} or {proxy+} parts) -> function."""

    method: str
    path: str
    function: str
    pattern: re.Pattern[str] = field(compare=False, repr=False)

    @property
    def key(self) -> str:
        return f"{self.method} {self.path}"

    def match(self, method: str, path: str) -> dict[str, str] | None:
        """Path parameters when this route takes the request, else None."""
        if self.method not in ("ANY", method.upper()):
            return None
        found = self.pattern.fullmatch(path)
        return found.groupdict() if found is not None else None


def _route_pattern(path: str) -> re.Pattern[str]:
    parts: list[str] = []
    for piece in re.split(r"(\{[^}]+\})", path):
        if piece.startswith("{") and piece.endswith("}"):
            name = piece[1:-1]
            greedy = name.endswith("+")
            name = name.rstrip("+")
            parts.append(f"(?P<{name}>.+)" if greedy else f"(?P<{name}>[^/]+)")
        else:
            parts.append(re.escape(piece))
    return re.compile("".join(parts))


# Event types whose functions the local stack runs: API routes, the stream pump, the schedule.
LOCAL_EVENT_TYPES = frozenset({"HttpApi", "DynamoDB", "Schedule", "SQS"})


def _function_code(
    template_path: Path, logical_id: str, props: Mapping[str, Any], globals_fn: Mapping[str, Any]
) -> FunctionCode:
    code_uri, handler = props.get("CodeUri"), props.get("Handler")
    if not isinstance(code_uri, str) or not isinstance(handler, str) or "." not in handler:
        raise ValueError(f"{template_path}: {logical_id} needs a literal CodeUri and Handler to run locally")
    module, _, attribute = handler.rpartition(".")
    return FunctionCode(
        logical_id=logical_id,
        code_dir=(template_path.parent / code_uri).resolve(),
        module=module,
        attribute=attribute,
        timeout_seconds=int(props.get("Timeout") or globals_fn.get("Timeout") or DEFAULT_TIMEOUT_SECONDS),
        memory_mb=int(props.get("MemorySize") or globals_fn.get("MemorySize") or 128),
    )


def functions_from_template(template_path: Path) -> dict[str, FunctionCode]:
    """Every function the local stack runs: those with an API route, a stream or a schedule."""

    template = load_template(template_path)
    globals_fn = (template.get("Globals") or {}).get("Function") or {}
    functions: dict[str, FunctionCode] = {}
    for logical_id, resource in template["Resources"].items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        props = resource.get("Properties") or {}
        if any(e.get("Type") in LOCAL_EVENT_TYPES for e in (props.get("Events") or {}).values()):
            functions[logical_id] = _function_code(template_path, logical_id, props, globals_fn)
    return functions


def api_from_template(template_path: Path) -> tuple[list[Route], dict[str, FunctionCode]]:
    """Routes and functions from the template's HttpApi events, so the local server can't drift
    from what API Gateway serves: a route added to template.yaml is served locally too."""

    template = load_template(template_path)
    globals_fn = (template.get("Globals") or {}).get("Function") or {}
    routes: list[Route] = []
    functions: dict[str, FunctionCode] = {}
    for logical_id, resource in template["Resources"].items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        props = resource.get("Properties") or {}
        events = [e for e in (props.get("Events") or {}).values() if e.get("Type") == "HttpApi"]
        if not events:
            continue
        functions[logical_id] = _function_code(template_path, logical_id, props, globals_fn)
        for event in events:
            eprops = event.get("Properties") or {}
            method = str(eprops.get("Method", "ANY")).upper()
            path = str(eprops.get("Path", "/{proxy+}"))
            routes.append(Route(method, path, logical_id, _route_pattern(path)))
    # Most specific first: a literal path beats a parameter, as API Gateway picks them.
    routes.sort(key=lambda r: (r.path.count("{"), -len(r.path), r.method == "ANY"))
    return routes, functions


def function_environment(
    template_path: Path, functions: Sequence[str], refs: Mapping[str, str], fixed: Mapping[str, object]
) -> dict[str, str]:
    """The variables the template gives `functions` (Globals, then each function's own) that the
    stack does not set itself (`fixed`), with `!Ref` resolved through `refs` (logical id -> local
    value) or a parameter's Default. Values the stack can't resolve (`!Sub` of a stage name) are
    left out: the stack sets those itself.

    Local containers serve every function, so they share one environment: two functions wanting
    different values for one variable is an error here rather than a silent pick.
    """

    template = load_template(template_path)
    parameters = template.get("Parameters") or {}
    globals_vars = (((template.get("Globals") or {}).get("Function") or {}).get("Environment") or {}).get(
        "Variables"
    ) or {}

    def resolve(value: object) -> str | None:
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            return str(value)
        if isinstance(value, dict) and set(value) == {"Ref"}:
            name = str(value["Ref"])
            if name in refs:
                return refs[name]
            default = (parameters.get(name) or {}).get("Default")
            return None if default is None else str(default)
        return None

    resolved: dict[str, str] = {}
    owner: dict[str, str] = {}
    for logical_id in functions:
        props = template["Resources"][logical_id].get("Properties") or {}
        variables = {**globals_vars, **((props.get("Environment") or {}).get("Variables") or {})}
        for name, raw in variables.items():
            if name in fixed:
                continue
            value = resolve(raw)
            if value is None:
                continue
            if name in resolved and resolved[name] != value:
                raise ValueError(
                    f"{template_path}: {owner[name]} and {logical_id} set {name} differently; local "
                    "containers share one environment"
                )
            resolved[name], owner[name] = value, logical_id
    return resolved


def load_handler(code: FunctionCode) -> Handler:
    """Import the function's handler module from its file, as Lambda does (code dir on sys.path)."""
    path = code.code_dir / (code.module.replace(".", "/") + ".py")
    name = f"nudge_local_fn_{code.logical_id}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module: ModuleType = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    sys.path.insert(0, str(code.code_dir))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(code.code_dir))
    handler: Handler = getattr(module, code.attribute)
    return handler


@dataclass
class LocalLambdaContext:
    """The parts of Lambda's context object that handlers and Powertools read."""

    function_name: str
    aws_request_id: str
    memory_limit_in_mb: int = 128
    timeout_seconds: int = DEFAULT_TIMEOUT_SECONDS
    function_version: str = "$LATEST"
    started: float = field(default_factory=time.monotonic)

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{self.function_name}"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        return "local"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.timeout_seconds - (time.monotonic() - self.started)) * 1000))


# ---------------------------------------------------------------------------- containers


class _Containers:
    """Where handlers run; see the module docstring for why one request per container."""

    def invoke(self, code: FunctionCode, event: dict[str, Any], now: datetime) -> dict[str, Any]:
        raise NotImplementedError

    def close(self) -> None:
        pass


class _InProcess(_Containers):
    def __init__(self, functions: Mapping[str, FunctionCode]) -> None:
        self._lock = threading.Lock()
        self._handlers = {fid: load_handler(code) for fid, code in functions.items()}

    def invoke(self, code: FunctionCode, event: dict[str, Any], now: datetime) -> dict[str, Any]:
        with self._lock:
            # The stack installed its clock in this process already: nothing to pin.
            return _call(self._handlers[code.logical_id], code, event)


class _WorkerProcesses(_Containers):
    def __init__(
        self, functions: Mapping[str, FunctionCode], count: int, env: Mapping[str, str], logs: Path | None
    ) -> None:
        self._functions = dict(functions)
        self._count = count
        self._env = dict(env)
        self._logs = logs
        self._lock = threading.Lock()
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        # spawn, not fork: this process runs threads (moto server, HTTP server), and a forked
        # child would inherit their locks in whatever state they were.
        pool = ProcessPoolExecutor(
            max_workers=self._count,
            mp_context=get_context("spawn"),
            initializer=_container_start,
            initargs=(self._env, self._functions, self._logs),
        )
        # Cold-start the containers together now rather than on the first requests.
        for ready in [pool.submit(_container_ping) for _ in range(self._count)]:
            ready.result()
        return pool

    def invoke(self, code: FunctionCode, event: dict[str, Any], now: datetime) -> dict[str, Any]:
        pool = self._pool
        try:
            outcome: tuple[bool, Any] = pool.submit(_container_invoke, code.logical_id, event, now).result()
        except BrokenProcessPool as exc:
            # A container died (killed, out of memory): like Lambda, answer 500 and start fresh ones.
            with self._lock:
                if self._pool is pool:
                    pool.shutdown(wait=False, cancel_futures=True)
                    self._pool = self._new_pool()
            raise HandlerFailed(f"{code.logical_id} container died") from exc
        ok, value = outcome
        if not ok:
            raise HandlerFailed(str(value))
        result: dict[str, Any] = value
        return result

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def _call(handler: Handler, code: FunctionCode, event: dict[str, Any]) -> dict[str, Any]:
    request_id = str((event.get("requestContext") or {}).get("requestId") or uuid.uuid4())
    context = LocalLambdaContext(
        function_name=code.logical_id,
        aws_request_id=request_id,
        memory_limit_in_mb=code.memory_mb,
        timeout_seconds=code.timeout_seconds,
    )
    try:
        result = handler(event, context)
    except Exception as exc:
        # Lambda writes the stack trace to the function's log; the caller only sees a 500.
        traceback.print_exc(file=sys.stderr)
        raise HandlerFailed(f"{code.logical_id} raised {type(exc).__name__}") from exc
    if isinstance(result, dict):
        return result
    # Payload v2.0 lets a handler return a bare value: API Gateway sends it as JSON, 200.
    return {"statusCode": 200, "headers": {"content-type": "application/json"}, "body": json.dumps(result)}


# State of one worker process ("container"): set by _container_start, used per invocation.
_container_handlers: dict[str, tuple[FunctionCode, Handler]] = {}


def _container_start(env: dict[str, str], functions: dict[str, FunctionCode], logs: Path | None) -> None:
    # Ctrl-C reaches the whole process group: the parent stops the containers, in order.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # If the parent dies without stopping them (SIGKILL, a crash), no container outlives it.
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_with, args=(parent.sentinel,), name="parent-watch", daemon=True).start()
    os.environ.update(env)
    if logs is not None:
        # What Lambda sends to CloudWatch Logs (stdout and stderr) goes to one file instead.
        log_fd = os.open(logs, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(log_fd)
    for fid, code in functions.items():
        _container_handlers[fid] = (code, load_handler(code))


def _exit_with(parent_sentinel: int) -> None:
    multiprocessing.connection.wait([parent_sentinel])
    os._exit(0)


def _container_ping() -> int:
    return os.getpid()


def _container_invoke(function_id: str, event: dict[str, Any], now: datetime) -> tuple[bool, Any]:

    code, handler = _container_handlers[function_id]
    # The simulated clock lives in the parent; each request carries its reading.
    clock.install(lambda: now)
    try:
        return True, _call(handler, code, event)
    except HandlerFailed as exc:
        return False, str(exc)


# ---------------------------------------------------------------------------- moto's costs


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


# ---------------------------------------------------------------------------- the stack


def _guardrails_sender(rules_dir: Path) -> str:
    """sender.email_from of rules/guardrails.yaml, read plainly (the functions validate the file)."""

    path = rules_dir / "guardrails.yaml"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return ""
    sender = (data.get("sender") or {}) if isinstance(data, dict) else {}
    return str(sender.get("email_from") or "") if isinstance(sender, dict) else ""


def find_root(start: Path | None = None) -> Path:
    """The project directory: the nearest one holding template.yaml, from `start` (or the current
    directory) upwards, else the checkout this package was installed from."""
    candidates = [start or Path.cwd(), Path(__file__).resolve()]
    for candidate in candidates:
        for directory in [candidate, *candidate.parents]:
            if (directory / "template.yaml").is_file() and (directory / "functions").is_dir():
                return directory
    raise FileNotFoundError("no template.yaml found here or above; run from the Nudge project directory")


@contextmanager
def _patched_environ(values: Mapping[str, str | None]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    try:
        for name, value in values.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        yield
    finally:
        for name, old in saved.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old


class SettleError(RuntimeError):
    """The stream never went quiet: a function's own writes keep invoking it."""


class LocalStack:
    """moto + resources from template.yaml + simulated clock + the real handlers.

    Use as a context manager, or start()/stop(). Environment variables it sets for boto3,
    Powertools and nudge.settings are restored by stop().

    What Lambda and EventBridge would do on their own, the stack does when asked
    (``nudge.tools.local.pumps``): ``settle()`` pumps the table's stream into the evaluate function
    until nothing is left; ``run_due()`` also runs the sweep when a firing of its schedule fell
    since the last run; ``advance_clock(t)`` moves the simulated clock and runs what became due.
    ``start_background()`` (``nudge serve``) calls ``run_due()`` every second, as the real
    services would poll and fire on their own.
    """

    def __init__(
        self,
        *,
        root: Path | None = None,
        rules_dir: Path | None = None,
        write_keys: Sequence[str] | None = None,
        clock: SimulatedClock | None = None,
        containers: int = 0,
        log_level: str = "INFO",
        function_logs: Path | None = None,
        api_url: str = DEFAULT_API_URL,
    ) -> None:
        self.root = (root or find_root()).resolve()
        self.api_url = api_url.rstrip("/")
        self.template_path = self.root / "template.yaml"
        self.rules_dir = (rules_dir or self.root / "rules").resolve()
        self.write_keys = list(write_keys) if write_keys is not None else write_keys_from_env()
        if not self.write_keys:
            raise ValueError("the local stack needs at least one write key")
        self.clock = clock or SimulatedClock()
        self.containers = containers
        self.log_level = log_level
        if function_logs is not None and containers < 1:
            raise ValueError("function_logs needs containers >= 1: in-process handlers share this stdout")
        self.function_logs = function_logs
        self.routes, _ = api_from_template(self.template_path)
        self.functions = functions_from_template(self.template_path)
        self.queue_urls: dict[str, str] = {}
        self._moto: LockedMotoServer | None = None
        self._runner: _Containers | None = None
        self._env: ExitStack | None = None
        self._store: DynamoUsageStore | None = None
        self._segments: DynamoSegmentStore | None = None
        self._settings: Settings | None = None
        self._pumps: list[StreamPump] = []
        self._queue_pumps: list[QueuePump] = []
        self._schedules: list[ScheduledFunction] = []
        self._taps: dict[str, QueueTap] = {}
        # One driver at a time: an HTTP request moving the clock, the background loop, the demo.
        # Re-entrant: advance_clock runs run_due, which runs settle.
        self._drive = threading.RLock()
        self._background: threading.Thread | None = None
        self._background_stop = threading.Event()

    # -- lifecycle

    def start(self) -> Self:

        if self._moto is not None:
            raise RuntimeError("the local stack is already started")
        speed_up_moto()
        moto = LockedMotoServer()
        moto.start()
        self._moto = moto
        try:
            self._env = ExitStack()
            fixed = self._environment(moto.endpoint_url)
            self._env.enter_context(_patched_environ(fixed))
            session = boto3.session.Session()
            dynamodb: DynamoDBClient = session.client("dynamodb")
            sqs: SQSClient = session.client("sqs")
            create_usage_resources(
                dynamodb, session.client("ssm"), self.template_path, Settings(), self.write_keys
            )
            # A fresh signing secret per stack: local unsubscribe links are only good while it runs.
            session.client("ssm").put_parameter(
                Name=UNSUBSCRIBE_SECRET_PARAM,
                Value=secrets.token_urlsafe(32),
                Type="SecureString",
                Overwrite=True,
            )
            self.queue_urls = create_queues(sqs, self.template_path, QUEUE_PREFIX)
            # What the template gives the functions (queue URLs, the due index's shards, the CS
            # topic, the push application), resolved to the local resources: set before the
            # containers copy the env.
            refs = {
                **self.queue_urls,
                **table_names(Settings()),
                **LOCAL_PARAMETERS,
                **self._messaging_resources(session),
            }
            self._env.enter_context(
                _patched_environ(function_environment(self.template_path, list(self.functions), refs, fixed))
            )
            settings = Settings()
            self._settings = settings
            self._store = DynamoUsageStore(dynamodb, settings.usage_table, settings.rollup_shards)
            self._segments = DynamoSegmentStore(
                dynamodb, settings.usage_table, index=settings.due_index, due_shards=settings.due_shards
            )
            clock.install(self.clock.now)
            # Anything built from the old environment (settings, clients, cached keys) goes.
            bootstrap.reset()
            parameters.clear_caches()  # type: ignore[no-untyped-call]
            if self.containers > 0:
                self._runner = _WorkerProcesses(
                    self.functions, self.containers, dict(os.environ), self.function_logs
                )
            else:
                self._runner = _InProcess(self.functions)
            self._wire_sources(session, dynamodb, sqs, settings)
        except BaseException:
            self.stop()
            raise
        return self

    def _messaging_resources(self, session: boto3.session.Session) -> dict[str, str]:
        """What the template takes from outside (the SES sender identity, a push platform
        application) or declares beyond tables and queues (the CS topic), made in moto."""

        sender = parseaddr(_guardrails_sender(self.rules_dir))[1]
        if sender:
            # SES refuses to send from an unverified identity, in moto as in AWS.
            session.client("ses").verify_email_identity(EmailAddress=sender)
        sns = session.client("sns")
        application = sns.create_platform_application(
            Name="nudge-local-push", Platform="GCM", Attributes={"PlatformCredential": "local"}
        )["PlatformApplicationArn"]
        refs = {"PushApplicationArn": application}
        for logical_id, resource in load_template(self.template_path)["Resources"].items():
            if resource.get("Type") == "AWS::SNS::Topic":
                refs[logical_id] = sns.create_topic(Name=f"{QUEUE_PREFIX}-{logical_id}")["TopicArn"]
        return refs

    def _wire_sources(
        self, session: boto3.session.Session, dynamodb: DynamoDBClient, sqs: SQSClient, settings: Settings
    ) -> None:
        """The template's stream and schedule events, and taps on the queues nothing consumes yet."""

        template = load_template(self.template_path)
        tables = table_names(settings)
        streams: DynamoDBStreamsClient = session.client("dynamodbstreams")

        def queue(logical_id: str | None, where: str) -> str | None:
            if logical_id is None:
                return None
            if logical_id not in self.queue_urls:
                raise TemplateError(f"{self.template_path}: {where} sends to {logical_id}, not a queue here")
            return self.queue_urls[logical_id]

        for source in stream_sources(template):
            arn = dynamodb.describe_table(TableName=tables[source.table])["Table"].get("LatestStreamArn")
            if not arn:
                raise TemplateError(
                    f"{self.template_path}: {source.table} has no stream for {source.function}"
                )
            pump = StreamPump(
                source,
                stream_arn=arn,
                streams=streams,
                sqs=sqs,
                failure_queue_url=queue(source.on_failure_queue, f"{source.function}.{source.event}"),
                invoke=self.invoke_function,
                now=self.clock.now,
                lanes=max(1, self.containers),
            )
            pump.start()
            self._pumps.append(pump)
        anchor = self.clock.now()
        for schedule in schedule_sources(template):
            self._schedules.append(
                ScheduledFunction(
                    schedule,
                    invoke=self.invoke_function,
                    sqs=sqs,
                    failure_queue_url=queue(
                        schedule.on_failure_queue, f"{schedule.function}.EventInvokeConfig"
                    ),
                    anchor=anchor,
                )
            )
        for queue_source in queue_sources(template):
            url = queue(queue_source.queue, f"{queue_source.function}.{queue_source.event}")
            assert url is not None
            arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
                "QueueArn"
            ]
            self._queue_pumps.append(
                QueuePump(
                    queue_source,
                    queue_url=url,
                    queue_arn=arn,
                    sqs=sqs,
                    invoke=self.invoke_function,
                    lanes=max(1, self.containers),
                )
            )
        for logical_id in TAPPED_QUEUES:
            if logical_id in self.queue_urls:
                self._taps[logical_id] = QueueTap(sqs, self.queue_urls[logical_id], self.clock.now)

    def stop(self) -> None:

        self.stop_background()
        pumps, self._pumps = self._pumps, []
        for pump in pumps:
            pump.close()
        queue_pumps, self._queue_pumps = self._queue_pumps, []
        for queue_pump in queue_pumps:
            queue_pump.close()
        self._schedules, self._taps = [], {}
        runner, self._runner = self._runner, None
        if runner is not None:
            runner.close()
        moto, self._moto = self._moto, None
        if moto is not None:
            moto.stop()
        env, self._env = self._env, None
        if env is not None:
            env.close()
        clock.install(lambda: datetime.now(UTC))
        bootstrap.reset()
        self._store = None
        self._segments = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _environment(self, endpoint_url: str) -> dict[str, str | None]:
        return {
            # boto3 (>= 1.28) sends every service to this URL: nothing can reach real AWS.
            "AWS_ENDPOINT_URL": endpoint_url,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",  # moto accepts any credentials
            # Real credentials in the shell must not be picked up, even by accident.
            "AWS_SESSION_TOKEN": None,
            "AWS_SECURITY_TOKEN": None,
            "AWS_PROFILE": None,
            "POWERTOOLS_TRACE_DISABLED": "1",
            # One name for every function: local containers serve them all from one process.
            "POWERTOOLS_SERVICE_NAME": "nudge-local",
            "POWERTOOLS_METRICS_NAMESPACE": "Nudge",
            # Not POWERTOOLS_METRICS_DISABLED: Powertools 3.x then never clears its metric set,
            # which grows with every request and is printed anyway each 100 values. The EMF
            # lines go where Lambda's stdout goes: the terminal, or `function_logs`.
            "POWERTOOLS_METRICS_DISABLED": None,
            "POWERTOOLS_LOG_LEVEL": self.log_level,
            "NUDGE_USAGE_TABLE": USAGE_TABLE,
            "NUDGE_LEDGER_TABLE": LEDGER_TABLE,
            "NUDGE_UNSUBSCRIBE_SECRET_PARAM": UNSUBSCRIBE_SECRET_PARAM,
            # Links in local messages point at the local API (`nudge serve`'s address).
            "NUDGE_UNSUBSCRIBE_URL": f"{self.api_url}/v1/unsubscribe",
            "NUDGE_WRITE_KEYS_PARAM": WRITE_KEYS_PARAM,
            "NUDGE_RULES_DIR": str(self.rules_dir),
        }

    # -- what callers use

    @property
    def started(self) -> bool:
        return self._runner is not None

    @property
    def endpoint_url(self) -> str:
        if self._moto is None:
            raise RuntimeError("the local stack is not started")
        return self._moto.endpoint_url

    @property
    def store(self) -> DynamoUsageStore:
        if self._store is None:
            raise RuntimeError("the local stack is not started")
        return self._store

    @property
    def segments(self) -> DynamoSegmentStore:
        """Where the evaluator keeps each user's segment record (read-only here)."""
        if self._segments is None:
            raise RuntimeError("the local stack is not started")
        return self._segments

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            raise RuntimeError("the local stack is not started")
        return self._settings

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        """The template route that serves `METHOD path`, with its path parameters."""
        for route in self.routes:
            params = route.match(method, path)
            if params is not None:
                return route, params
        return None

    def invoke(self, route: Route, event: dict[str, Any]) -> dict[str, Any]:
        """Run the route's function on an API Gateway event; HandlerFailed if it raised."""
        return self.invoke_function(route.function, event)

    def invoke_function(self, logical_id: str, event: dict[str, Any]) -> dict[str, Any]:
        """Run a function of the template on `event` at the simulated now; HandlerFailed if it raised."""
        if self._runner is None:
            raise RuntimeError("the local stack is not started")
        return self._runner.invoke(self.functions[logical_id], event, self.clock.now())

    # -- what Lambda and EventBridge would do on their own

    @property
    def pumps(self) -> Sequence[StreamPump]:
        return tuple(self._pumps)

    @property
    def queue_pumps(self) -> Sequence[QueuePump]:
        return tuple(self._queue_pumps)

    @property
    def schedules(self) -> Sequence[ScheduledFunction]:
        return tuple(self._schedules)

    @property
    def catch_up_step(self) -> timedelta:
        """How far advance_clock moves the clock at a time: a day, or a schedule's rate if longer."""
        return max([CATCH_UP_STEP, *(s.source.rate for s in self._schedules)])

    def settle(self) -> PumpStats:
        """Pump every stream until a pass invokes nothing, then drain the tapped queues.

        The evaluator's own writes (segment records) land on the stream too, but its filter keeps
        them away from it, so this takes two passes: the records, then the filtered-out writes.
        """

        with self._drive:
            total = PumpStats()
            for _ in range(MAX_SETTLE_PASSES):
                invoked = 0
                for pump in self._pumps:
                    stats = pump.pump()
                    total.add(stats)
                    invoked += stats.invocations
                # Then the queues the functions consume (decisions -> dispatch -> channels):
                # their work may write to the stream again (a deferral), hence the same loop.
                for queue_pump in self._queue_pumps:
                    invoked += queue_pump.pump().invocations
                if not invoked:
                    for tap in self._taps.values():
                        tap.drain()
                    return total
            raise SettleError(
                f"the stream still had work after {MAX_SETTLE_PASSES} passes: a function's own writes "
                "keep invoking it (check its FilterCriteria)"
            )

    def run_due(self) -> list[ScheduledRun]:
        """Run each schedule once if a firing fell since its last run, and settle the stream.

        The scheduled runs start at once, even while another driver (the background loop) is
        still pumping, and go on while the stream is pumped: the sweep and the stream evaluator
        run side by side in AWS too (the records they both touch are versioned: the loser
        re-reads). Then the stream is settled again for what the runs wrote.
        """
        now = self.clock.now()
        due = [schedule for schedule in self._schedules if schedule.claim(now)]
        if not due:
            with self._drive:
                self.settle()
            return []
        with ThreadPoolExecutor(max_workers=len(due), thread_name_prefix="schedule") as pool:
            running = [pool.submit(schedule.run, now) for schedule in due]
            with self._drive:
                self.settle()
            runs = [future.result() for future in running]
        with self._drive:
            self.settle()
        return runs

    def advance_clock(self, when: datetime) -> datetime:
        """Move the simulated clock to `when` and run everything due on the way.

        What was written before the move is evaluated first, at the time it happened. Then the
        clock moves at most `catch_up_step` (a day) at a time, running the sweep and the stream
        after each step: EventBridge would fire the sweep every 15 minutes through a month, but a
        day keeps time-based transitions in order (declining before dormant) and dated to within
        a day, for a month's jump in seconds. The last step lands on `when` exactly.
        """
        _require_aware(when)
        with self._drive:
            now = self.clock.now()
            if when < now:
                self.clock.advance_to(when)  # raises ClockError, saying why
            self.settle()
            step = self.catch_up_step
            at = now + step
            while at < when:
                self.clock.advance_to(at)
                self.run_due()
                at += step
            moved = self.clock.advance_to(when)
            self.run_due()
            return moved

    @property
    def ledger(self) -> DynamoLedger:

        if self._store is None:
            raise RuntimeError("the local stack is not started")
        return DynamoLedger(self._store.client, LEDGER_TABLE)

    def decisions(self) -> list[LedgerEntry]:
        """Every decision dispatched so far with what became of it (the ledger), oldest first."""
        with self._drive:
            return self.ledger.scan_entries()

    def outbox(self) -> list[dict[str, Any]]:
        """Messages sent to users (email, push, SMS), oldest first: GET /_local/outbox."""

        with self._drive:
            return outbox(self.ledger.scan_entries())

    def report_data(self) -> ReportData:
        """What `nudge report` shows, from the stack's tables, at the simulated now."""

        with self._drive:
            self.settle()
            store = self.store
            snapshot = snapshot_from_tables(store.client, store.table, LEDGER_TABLE)
            return build(load_rules(self.rules_dir), snapshot, self.clock.now(), "the local stack")

    def report_html(self) -> str:

        return render(self.report_data())

    def escalations(self) -> list[TappedMessage]:
        """Cases put on the customer-success queue, in the order they were read."""
        with self._drive:
            tap = self._taps.get(CS_QUEUE)
            if tap is None:
                return []
            tap.drain()
            return list(tap.messages())

    def start_background(self, interval_seconds: float = 1.0, *, schedules: bool = True) -> None:
        """Run what is due every `interval_seconds` on a thread, as Lambda and EventBridge would
        on their own (the clock runs at real speed under `nudge serve`): run_due(), or only
        settle() when `schedules` is false (the demo runs the sweep itself). Stopped by
        stop_background() or stop()."""
        if self._background is not None:
            return
        self._background_stop.clear()
        step = self.run_due if schedules else self.settle

        def loop() -> None:
            while not self._background_stop.wait(interval_seconds):
                try:
                    step()
                except Exception:
                    # A failing handler is already retried and dead-lettered by the pumps; this
                    # is the stack itself failing: say so, and keep serving.
                    traceback.print_exc(file=sys.stderr)

        self._background = threading.Thread(target=loop, name="nudge-local-due", daemon=True)
        self._background.start()

    def stop_background(self) -> None:
        thread, self._background = self._background, None
        if thread is not None:
            self._background_stop.set()
            thread.join()
