"""The embedded local stack: moto stands in for AWS, the real handlers run on a simulated clock.

``LocalStack`` starts an in-process moto server (one request at a time, see
``nudge.local.aws``), points boto3 at it through environment variables, creates the
template's tables and the write-keys SecureString, installs a ``SimulatedClock`` and loads
the real handlers named by template.yaml's HttpApi events (``functions/ingest/app.py``
today). ``nudge.local.http`` serves them over HTTP.

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

import importlib.util
import json
import multiprocessing.connection
import os
import re
import signal
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from multiprocessing import get_context
from pathlib import Path
from types import ModuleType, TracebackType
from typing import TYPE_CHECKING, Any, Self

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

    from nudge.local.aws import LockedMotoServer
    from nudge.settings import Settings
    from nudge.store.dynamo import DynamoUsageStore

DEFAULT_WRITE_KEY = "nudge-local-write-key"
WRITE_KEYS_ENV = "NUDGE_WRITE_KEYS"
REGION = "us-east-1"
# moto's default account: ARNs in contexts and events look like the ones moto itself makes.
ACCOUNT_ID = "123456789012"
WRITE_KEYS_PARAM = "/nudge/local/write-keys"
USAGE_TABLE = "nudge-local-usage"
DEFAULT_TIMEOUT_SECONDS = 3

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

    def advance_by(self, delta: timedelta) -> datetime:
        return self.advance_to(self.now() + delta)


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


def api_from_template(template_path: Path) -> tuple[list[Route], dict[str, FunctionCode]]:
    """Routes and functions from the template's HttpApi events, so the local server can't drift
    from what API Gateway serves: a route added to template.yaml is served locally too."""
    from nudge.local.template import load_template

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
        code_uri, handler = props.get("CodeUri"), props.get("Handler")
        if not isinstance(code_uri, str) or not isinstance(handler, str) or "." not in handler:
            raise ValueError(
                f"{template_path}: {logical_id} needs a literal CodeUri and Handler to run locally"
            )
        module, _, attribute = handler.rpartition(".")
        functions[logical_id] = FunctionCode(
            logical_id=logical_id,
            code_dir=(template_path.parent / code_uri).resolve(),
            module=module,
            attribute=attribute,
            timeout_seconds=int(props.get("Timeout") or globals_fn.get("Timeout") or DEFAULT_TIMEOUT_SECONDS),
            memory_mb=int(props.get("MemorySize") or globals_fn.get("MemorySize") or 128),
        )
        for event in events:
            eprops = event.get("Properties") or {}
            method = str(eprops.get("Method", "ANY")).upper()
            path = str(eprops.get("Path", "/{proxy+}"))
            routes.append(Route(method, path, logical_id, _route_pattern(path)))
    # Most specific first: a literal path beats a parameter, as API Gateway picks them.
    routes.sort(key=lambda r: (r.path.count("{"), -len(r.path), r.method == "ANY"))
    return routes, functions


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


class HandlerFailed(Exception):
    """The handler raised: API Gateway answers 500, as it does when a Lambda errors."""


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
    from nudge import clock

    code, handler = _container_handlers[function_id]
    # The simulated clock lives in the parent; each request carries its reading.
    clock.install(lambda: now)
    try:
        return True, _call(handler, code, event)
    except HandlerFailed as exc:
        return False, str(exc)


# ---------------------------------------------------------------------------- the stack


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


class LocalStack:
    """moto + resources from template.yaml + simulated clock + the real handlers.

    Use as a context manager, or start()/stop(). Environment variables it sets for boto3,
    Powertools and nudge.settings are restored by stop().
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
    ) -> None:
        self.root = (root or find_root()).resolve()
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
        self.routes, self.functions = api_from_template(self.template_path)
        self._moto: LockedMotoServer | None = None
        self._runner: _Containers | None = None
        self._env: ExitStack | None = None
        self._store: DynamoUsageStore | None = None
        self._settings: Settings | None = None

    # -- lifecycle

    def start(self) -> Self:
        import boto3
        from aws_lambda_powertools.utilities import parameters

        from nudge import clock
        from nudge.api.wiring import services
        from nudge.local.aws import LockedMotoServer, create_usage_resources
        from nudge.settings import Settings, get_settings
        from nudge.store.dynamo import DynamoUsageStore

        if self._moto is not None:
            raise RuntimeError("the local stack is already started")
        moto = LockedMotoServer()
        moto.start()
        self._moto = moto
        try:
            self._env = ExitStack()
            self._env.enter_context(_patched_environ(self._environment(moto.endpoint_url)))
            settings = Settings()
            session = boto3.session.Session()
            dynamodb: DynamoDBClient = session.client("dynamodb")
            create_usage_resources(
                dynamodb, session.client("ssm"), self.template_path, settings, self.write_keys
            )
            self._settings = settings
            self._store = DynamoUsageStore(dynamodb, settings.usage_table, settings.rollup_shards)
            clock.install(self.clock.now)
            # Anything built from the old environment (settings, clients, cached keys) goes.
            get_settings.cache_clear()
            services.cache_clear()
            parameters.clear_caches()  # type: ignore[no-untyped-call]
            if self.containers > 0:
                self._runner = _WorkerProcesses(
                    self.functions, self.containers, dict(os.environ), self.function_logs
                )
            else:
                self._runner = _InProcess(self.functions)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        from nudge import clock
        from nudge.api.wiring import services
        from nudge.settings import get_settings

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
        get_settings.cache_clear()
        services.cache_clear()
        self._store = None

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
            "POWERTOOLS_SERVICE_NAME": "ingest",
            "POWERTOOLS_METRICS_NAMESPACE": "Nudge",
            # Not POWERTOOLS_METRICS_DISABLED: Powertools 3.x then never clears its metric set,
            # which grows with every request and is printed anyway each 100 values. The EMF
            # lines go where Lambda's stdout goes: the terminal, or `function_logs`.
            "POWERTOOLS_METRICS_DISABLED": None,
            "POWERTOOLS_LOG_LEVEL": self.log_level,
            "NUDGE_USAGE_TABLE": USAGE_TABLE,
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
        if self._runner is None:
            raise RuntimeError("the local stack is not started")
        return self._runner.invoke(self.functions[route.function], event, self.clock.now())
