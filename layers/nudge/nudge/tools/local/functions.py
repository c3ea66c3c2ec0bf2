"""The template's functions as Lambda loads and names them: code, routes, handler, context.

template.yaml is the one source: ``functions_from_template`` lists every function the local
stack runs (those with an API route, a stream, a schedule or a queue), ``api_from_template``
their HttpApi routes, so the local server can't drift from what API Gateway serves.
``load_handler`` imports a handler from its file as Lambda does, and ``LocalLambdaContext``
is the context object it is called with.
"""

from __future__ import annotations

import gc
import importlib.util
import re
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from nudge.tools.local.aws import ACCOUNT_ID, REGION
from nudge.tools.local.template import load_template

DEFAULT_TIMEOUT_SECONDS = 3

Handler = Callable[[dict[str, Any], Any], Any]
# function logical id, event -> the handler's answer; raises HandlerFailed when the handler raised.
Invoker = Callable[[str, dict[str, Any]], dict[str, Any]]


def function_arn(logical_id: str) -> str:
    """The ARN a local function goes by (its name is its logical id, as in LocalLambdaContext)."""
    return f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{logical_id}"


def destination_time(at: datetime) -> str:
    """A time as Lambda writes it in an on-failure destination's record (ISO 8601, ms, Z)."""
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


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
    """Every function the local stack runs: those with an API route, a stream, a schedule, a queue
    or a function URL."""

    template = load_template(template_path)
    globals_fn = (template.get("Globals") or {}).get("Function") or {}
    functions: dict[str, FunctionCode] = {}
    for logical_id, resource in template["Resources"].items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        props = resource.get("Properties") or {}
        served = any(e.get("Type") in LOCAL_EVENT_TYPES for e in (props.get("Events") or {}).values())
        if served or props.get("FunctionUrlConfig"):
            functions[logical_id] = _function_code(template_path, logical_id, props, globals_fn)
    return functions


def function_url_from_template(template_path: Path) -> str | None:
    """The function with a function URL (the buffered front door), if the template has one: a
    LocalApiServer made with ``front_door=True`` sends it every request, as its URL would."""
    template = load_template(template_path)
    for logical_id, resource in template["Resources"].items():
        if resource.get("Type") == "AWS::Serverless::Function" and (resource.get("Properties") or {}).get(
            "FunctionUrlConfig"
        ):
            return str(logical_id)
    return None


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
        # The module pauses collection while it loads and freezes what it built (one container,
        # one handler); in this long-running process, what it froze must be collectable again.
        gc.unfreeze()
        gc.enable()
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
        return function_arn(self.function_name)

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        return "local"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.timeout_seconds - (time.monotonic() - self.started)) * 1000))
