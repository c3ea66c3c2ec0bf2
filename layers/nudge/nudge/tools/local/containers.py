"""Where the local stack's handlers run: "containers", in this process or in worker processes.

A Lambda container serves one request at a time, and the handlers rely on it: Powertools'
resolver keeps the current event on a class attribute and Metrics keeps one metric set per
process. So, like Lambda:

* ``InProcess`` (``containers=0``) runs the handler in this process, one request at a time;
* ``WorkerProcesses`` (``containers=N``) runs N worker processes, each a container serving one
  request at a time, so N requests really run at once and race on the same user the way
  concurrent Lambdas do (conditional writes, retries, 503 when contention outlasts them). They
  also use a second core, which the in-process mode can't (one GIL for moto, server and handler).

The worker side (``_container_*``) is at the end: what each worker process runs when it starts
and per invocation.
"""

from __future__ import annotations

import json
import multiprocessing.connection
import os
import signal
import sys
import threading
import traceback
import uuid
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import datetime
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from nudge import clock
from nudge.tools.local.aws import HandlerFailed
from nudge.tools.local.botocore_speedups import speed_up_botocore
from nudge.tools.local.functions import FunctionCode, Handler, LocalLambdaContext, load_handler
from nudge.tools.local.moto_relay import relay_to

# Where a container's calls to moto go instead of HTTP: (moto endpoint, relay socket, its key).
Relay = tuple[str, str, bytes]


class Containers:
    """Where handlers run; see the module docstring for why one request per container."""

    def invoke(self, code: FunctionCode, event: dict[str, Any], now: datetime) -> dict[str, Any]:
        raise NotImplementedError

    def close(self) -> None:
        pass


class InProcess(Containers):
    """One container in this process: every function's handler, one request at a time."""

    def __init__(self, functions: Mapping[str, FunctionCode]) -> None:
        self._lock = threading.Lock()
        self._handlers = {fid: load_handler(code) for fid, code in functions.items()}

    def invoke(self, code: FunctionCode, event: dict[str, Any], now: datetime) -> dict[str, Any]:
        # The stack's reading for this request, for this request only (as in a worker process): the
        # clock of whatever else runs in this process (a test, a CLI) stays its own.
        with self._lock, clock.installed(lambda: now):
            return _call(self._handlers[code.logical_id], code, event)


class WorkerProcesses(Containers):
    """`count` worker processes, each a container with every function's handler loaded."""

    def __init__(
        self,
        functions: Mapping[str, FunctionCode],
        count: int,
        env: Mapping[str, str],
        logs: Path | None,
        relay: Relay | None = None,
    ) -> None:
        self._functions = dict(functions)
        self._count = count
        self._env = dict(env)
        self._logs = logs
        self._relay = relay
        self._lock = threading.Lock()
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        # spawn, not fork: this process runs threads (moto server, HTTP server), and a forked
        # child would inherit their locks in whatever state they were.
        pool = ProcessPoolExecutor(
            max_workers=self._count,
            mp_context=get_context("spawn"),
            initializer=_container_start,
            initargs=(self._env, self._functions, self._logs, self._relay),
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


def _container_start(
    env: dict[str, str], functions: dict[str, FunctionCode], logs: Path | None, relay: Relay | None
) -> None:
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
    if relay is not None:
        # Before any handler makes a boto3 client: its calls to moto go down the relay.
        relay_to(*relay)
    speed_up_botocore()
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
    with clock.installed(lambda: now):
        try:
            return True, _call(handler, code, event)
        except HandlerFailed as exc:
            return False, str(exc)
