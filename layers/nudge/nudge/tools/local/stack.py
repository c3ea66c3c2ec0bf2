"""The embedded local stack: moto stands in for AWS, the real handlers run on a simulated clock.

``LocalStack`` starts an in-process moto server (one request at a time, see
``nudge.tools.local.aws``), points boto3 at it through environment variables
(``nudge.tools.local.environment``), creates the template's tables, queues and the write-keys
SecureString, installs a ``SimulatedClock`` and loads the real handlers of template.yaml's
functions (``nudge.tools.local.functions``) into "containers" (``nudge.tools.local.containers``:
in this process, or worker processes each serving one request at a time, as Lambda's do).
``nudge.tools.local.http`` serves them over HTTP; the pumps made by ``nudge.tools.local.wiring``
feed them the template's streams, schedules and queues.

Keys: the stack accepts the server keys in ``NUDGE_WRITE_KEYS``, the client keys in
``NUDGE_CLIENT_KEYS`` and the admin keys in ``NUDGE_ADMIN_KEYS``, or documented defaults
(``nudge.tools.local.write_keys``), stored hashed as in AWS.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import boto3
from aws_lambda_powertools.utilities import parameters

from nudge import bootstrap
from nudge.adapters.dynamo.ledger import DynamoLedger
from nudge.adapters.dynamo.segments import DynamoSegmentStore
from nudge.adapters.dynamo.snapshot import snapshot_from_tables
from nudge.adapters.dynamo.usage import DynamoUsageStore
from nudge.domain.report import build
from nudge.rulebook.loader import load_rules
from nudge.settings import Settings
from nudge.tools.local.aws import LockedMotoServer, table_names
from nudge.tools.local.background import Background
from nudge.tools.local.botocore_speedups import speed_up_botocore
from nudge.tools.local.containers import Containers, InProcess, WorkerProcesses
from nudge.tools.local.environment import (
    LEDGER_TABLE,
    LOCAL_PARAMETERS,
    function_environment,
    patched_environ,
    stack_environment,
)
from nudge.tools.local.expiry import expire
from nudge.tools.local.functions import (
    Route,
    api_from_template,
    function_url_from_template,
    functions_from_template,
)
from nudge.tools.local.mailbox_simulator import capture_send_tags, forget_sent
from nudge.tools.local.moto_direct import serve_in_process, stop_serving
from nudge.tools.local.moto_relay import MotoRelay
from nudge.tools.local.moto_speedups import speed_up_moto
from nudge.tools.local.outbox import outbox
from nudge.tools.local.queues import QueuePump
from nudge.tools.local.schedules import ScheduledFunction
from nudge.tools.local.simulated_clock import SimulatedClock, require_aware
from nudge.tools.local.streams import PumpStats, StreamPump
from nudge.tools.local.template import find_root
from nudge.tools.local.wiring import CS_QUEUE, EventSources, create_resources, messaging_resources
from nudge.tools.local.write_keys import local_keys
from nudge.tools.report.html import render

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_sqs.client import SQSClient

    from nudge.domain.report_model import ReportData
    from nudge.model.ledger import LedgerEntry
    from nudge.tools.local.queues import TappedMessage
    from nudge.tools.local.schedules import ScheduledRun

# Where links in messages point when no LocalApiServer serves the stack (one that does sets its own
# address: LocalStack.serve_at).
DEFAULT_API_URL = "http://127.0.0.1:8080"
# advance_clock moves the clock at most this far at a time (or a schedule's rate, if longer).
CATCH_UP_STEP = timedelta(days=1)
MAX_SETTLE_PASSES = 50


class SettleError(RuntimeError):
    """The stream never went quiet: a function's own writes keep invoking it."""


class LocalStack:
    """moto + resources from template.yaml + simulated clock + the real handlers.

    Use as a context manager, or start()/stop(). Environment variables it sets for boto3,
    Powertools and nudge.settings are restored by stop().

    What Lambda and EventBridge would do on their own, the stack does when asked (the pumps of
    ``nudge.tools.local.wiring``): ``settle()`` pumps the table's stream into the evaluate function
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
        client_keys: Sequence[str] | None = None,
        admin_keys: Sequence[str] | None = None,
        allowed_origins: Sequence[str] | None = None,
        user_token_secret: str | None = None,
        clock: SimulatedClock | None = None,
        containers: int = 0,
        log_level: str = "INFO",
        function_logs: Path | None = None,
        api_url: str = DEFAULT_API_URL,
        parameter_overrides: Mapping[str, str] | None = None,
    ) -> None:
        self.root = (root or find_root()).resolve()
        self.api_url = api_url.rstrip("/")
        # Template parameters set as `sam deploy --parameter-overrides` would (e.g. StateTtlDays).
        self.parameter_overrides = dict(parameter_overrides or {})
        self.template_path = self.root / "template.yaml"
        self.rules_dir = (rules_dir or self.root / "rules").resolve()
        self.keys = local_keys(
            server=list(write_keys) if write_keys is not None else None,
            client=list(client_keys) if client_keys is not None else None,
            admin=list(admin_keys) if admin_keys is not None else None,
            origins=list(allowed_origins) if allowed_origins is not None else None,
            user_token_secret=user_token_secret,
        )
        self.write_keys = list(self.keys.server)
        if not self.write_keys:
            raise ValueError("the local stack needs at least one write key")
        self.clock = clock or SimulatedClock()
        self.containers = containers
        self.log_level = log_level
        if function_logs is not None and containers < 1:
            raise ValueError("function_logs needs containers >= 1: in-process handlers share this stdout")
        self.function_logs = function_logs
        self.routes, _ = api_from_template(self.template_path)
        front = function_url_from_template(self.template_path)
        # A function URL sends every path and method to its function (routeKey $default).
        self.front_door_route = (
            Route("ANY", "/{proxy+}", front, re.compile(".*")) if front is not None else None
        )
        self.functions = functions_from_template(self.template_path)
        self.queue_urls: dict[str, str] = {}
        self._moto: LockedMotoServer | None = None
        self._relay: MotoRelay | None = None
        self._runner: Containers | None = None
        self._env: ExitStack | None = None
        self._store: DynamoUsageStore | None = None
        self._segments: DynamoSegmentStore | None = None
        self._settings: Settings | None = None
        self._sources = EventSources()
        # One driver at a time: an HTTP request moving the clock, the background loop, the demo.
        # Re-entrant: advance_clock runs run_due, which runs settle.
        self._drive = threading.RLock()
        self._background = Background("nudge-local-due")

    # -- lifecycle

    def start(self) -> Self:
        if self._moto is not None:
            raise RuntimeError("the local stack is already started")
        speed_up_moto()
        speed_up_botocore()
        capture_send_tags()
        moto = LockedMotoServer()
        moto.start()
        self._moto = moto
        # This process's calls to the server skip HTTP (sessions made before count too).
        earlier = (boto3.DEFAULT_SESSION,) if boto3.DEFAULT_SESSION else ()
        serve_in_process(moto.endpoint_url, moto.lock, earlier)
        try:
            self._env = ExitStack()
            fixed = stack_environment(
                moto.endpoint_url, api_url=self.api_url, log_level=self.log_level, rules_dir=self.rules_dir
            )
            self._env.enter_context(patched_environ(fixed))
            session = boto3.session.Session()
            dynamodb: DynamoDBClient = session.client("dynamodb")
            sqs: SQSClient = session.client("sqs")
            self.queue_urls = create_resources(session, dynamodb, sqs, self.template_path, self.keys)
            # What the template gives the functions (queue URLs, the due index's shards, the CS
            # topic, the push application), resolved to the local resources: set before the
            # containers copy the env.
            refs = {
                **self.queue_urls,
                **table_names(Settings()),
                **LOCAL_PARAMETERS,
                **self.parameter_overrides,
                **messaging_resources(session, self.rules_dir, self.template_path),
            }
            self._env.enter_context(
                patched_environ(function_environment(self.template_path, list(self.functions), refs, fixed))
            )
            settings = Settings()
            self._settings = settings
            self._store = DynamoUsageStore(
                dynamodb,
                settings.usage_table,
                settings.rollup_shards,
                state_ttl=bootstrap.state_ttl(settings),
            )
            self._segments = DynamoSegmentStore(
                dynamodb, settings.usage_table, index=settings.due_index, due_shards=settings.due_shards
            )
            # Anything built from the old environment (settings, clients, cached keys) goes.
            bootstrap.reset()
            parameters.clear_caches()  # type: ignore[no-untyped-call]
            if self.containers > 0:
                # The containers' calls to moto come here over a pipe, not HTTP (moto_relay).
                self._relay = MotoRelay(moto.lock)
                self._runner = WorkerProcesses(
                    self.functions,
                    self.containers,
                    dict(os.environ),
                    self.function_logs,
                    (moto.endpoint_url, self._relay.address, self._relay.authkey),
                )
            else:
                self._runner = InProcess(self.functions)
            self._sources.wire(
                self.template_path,
                session,
                dynamodb,
                sqs,
                settings,
                queue_urls=self.queue_urls,
                invoke=self.invoke_function,
                now=self.clock.now,
                lanes=max(1, self.containers),
            )
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        self.stop_background()
        sources, self._sources = self._sources, EventSources()
        sources.close()
        runner, self._runner = self._runner, None
        if runner is not None:
            runner.close()
        relay, self._relay = self._relay, None
        if relay is not None:
            relay.close()
        moto, self._moto = self._moto, None
        if moto is not None:
            stop_serving(moto.endpoint_url)
            moto.stop()
        env, self._env = self._env, None
        if env is not None:
            env.close()
        # Nothing built from the stack's environment outlives it: settings and clients (bootstrap),
        # and Powertools' parameter providers, whose boto3 clients point at the stopped moto server.
        bootstrap.reset()
        parameters.clear_caches()  # type: ignore[no-untyped-call]
        self._store = None
        self._segments = None
        forget_sent()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- what callers use

    def serve_at(self, url: str) -> None:
        """Links in messages (unsubscribe) point at `url`: the address the LocalApiServer serving
        this stack really listens on. Set before start: the functions' environment is made then."""
        url = url.rstrip("/")
        if self.started and url != self.api_url:
            raise RuntimeError(
                f"the local stack already started with links to {self.api_url}; make its LocalApiServer "
                "before starting it, so links point where the API is served"
            )
        self.api_url = url

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
        return tuple(self._sources.stream_pumps)

    @property
    def queue_pumps(self) -> Sequence[QueuePump]:
        return tuple(self._sources.queue_pumps)

    @property
    def schedules(self) -> Sequence[ScheduledFunction]:
        return tuple(self._sources.schedules)

    @property
    def catch_up_step(self) -> timedelta:
        """How far advance_clock moves the clock at a time: a day, or a schedule's rate if longer."""
        return max([CATCH_UP_STEP, *(s.source.rate for s in self._sources.schedules)])

    def settle(self) -> PumpStats:
        """Pump every stream until a pass invokes nothing, then drain the tapped queues.

        The evaluator's own writes (segment records) land on the stream too, but its filter keeps
        them away from it, so this takes two passes: the records, then the filtered-out writes.
        """

        with self._drive:
            total = PumpStats()
            for _ in range(MAX_SETTLE_PASSES):
                invoked = 0
                for pump in self._sources.stream_pumps:
                    stats = pump.pump()
                    total.add(stats)
                    invoked += stats.invocations
                # Then the queues the functions consume (decisions -> dispatch -> channels):
                # their work may write to the stream again (a deferral), hence the same loop.
                for queue_pump in self._sources.queue_pumps:
                    invoked += queue_pump.pump().invocations
                # SES's events for the mail just sent (the feedback queue's pump takes them next).
                if self._sources.mailbox is not None:
                    invoked += self._sources.mailbox.pump()
                if not invoked:
                    for tap in self._sources.taps.values():
                        tap.drain()
                    return total
            raise SettleError(
                f"the stream still had work after {MAX_SETTLE_PASSES} passes: a function's own writes "
                "keep invoking it (check its FilterCriteria)"
            )

    def engage_all(self, readings: Sequence[tuple[str, str, str]]) -> int:
        """Readers open (`kind` open) or click (click, `link`) sent emails, each (message id, kind,
        link): SES's events are published and handled on return; how many were (0: no such email)."""
        with self._drive:
            mailbox = self._sources.mailbox
            published = sum(mailbox.engage(*reading) for reading in readings) if mailbox is not None else 0
            self.settle()
            return published

    def run_due(self) -> list[ScheduledRun]:
        """Run each schedule once if a firing fell since its last run, and settle the stream.

        The scheduled runs start at once, even while another driver (the background loop) is
        still pumping, and go on while the stream is pumped: the sweep and the stream evaluator
        run side by side in AWS too (the records they both touch are versioned: the loser
        re-reads). Then the stream is settled again for what the runs wrote.
        """
        now = self.clock.now()
        due = [schedule for schedule in self._sources.schedules if schedule.claim(now)]
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
        require_aware(when)
        with self._drive:
            now = self.clock.now()
            if when < now:
                self.clock.advance_to(when)  # raises ClockError, saying why
            self.settle()
            step = self.catch_up_step
            at = now + step
            while at < when:
                self.clock.advance_to(at)
                self._expire(at)
                self.run_due()
                at += step
            moved = self.clock.advance_to(when)
            self._expire(moved)
            self.run_due()
            return moved

    def _expire(self, now: datetime) -> None:
        """What DynamoDB's TTL would have deleted by `now` (moto never does it)."""
        if self._store is not None:
            expire(self._store.client, now)

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
            tap = self._sources.taps.get(CS_QUEUE)
            if tap is None:
                return []
            tap.drain()
            return list(tap.messages())

    def start_background(self, interval_seconds: float = 1.0, *, schedules: bool = True) -> None:
        """Run what is due every `interval_seconds` on a thread, as Lambda and EventBridge would
        on their own (the clock runs at real speed under `nudge serve`): run_due(), or only
        settle() when `schedules` is false (the demo runs the sweep itself). Stopped by
        stop_background() or stop()."""
        self._background.start(self.run_due if schedules else self.settle, interval_seconds)

    def stop_background(self) -> None:
        self._background.stop()
