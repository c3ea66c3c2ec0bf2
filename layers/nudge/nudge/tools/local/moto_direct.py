"""boto3 calls to the local stack's moto server, answered by moto's backends in this process.

Every boto3 client the local stack makes, and every client its handlers make, talks to the
in-process moto server over loopback HTTP (``AWS_ENDPOINT_URL``). werkzeug closes the connection
after every response, so each call paid a TCP connect, a server thread, HTTP parsing on both sides
and urllib3's pool: more than half of the CPU of a call that moto itself answers in a fraction of
a millisecond. ``serve_in_process`` answers a request addressed to the server's URL, in the
process that runs the server, the way ``moto.mock_aws`` answers one addressed to AWS: the
same backends (moto's are process-global), the same response code, under the server's request
lock, so DynamoDB's per-request atomicity holds as before. boto3 still builds, signs, validates
and parses each call exactly as it does against AWS; only the socket is gone.

Requests for a service not mapped here, or for another URL, go over HTTP as before. Worker
processes ("containers") cannot share this process's backends: ``nudge.tools.local.moto_relay``
carries their calls here over one kept-open pipe each.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping
from io import BytesIO
from typing import Any
from urllib.parse import urlsplit

import botocore.session
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.handlers import BUILTIN_HANDLERS
from moto import backend_index, backends
from moto.core.base_backend import BackendDict
from moto.core.botocore_stubber import BotocoreStubber
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.core.request import normalize_request
from moto.moto_api import recorder
from werkzeug.exceptions import HTTPException

from nudge.tools.local.aws import REGION

# The SigV4 signing name of each service the stack uses -> the host boto3 would call in AWS, which
# moto's URL patterns recognise. DynamoDB Streams signs as "dynamodb" (told apart by its target).
_HOSTS = {
    "dynamodb": f"dynamodb.{REGION}.amazonaws.com",
    "sqs": f"sqs.{REGION}.amazonaws.com",
    "ssm": f"ssm.{REGION}.amazonaws.com",
    "sns": f"sns.{REGION}.amazonaws.com",
    "ses": f"email.{REGION}.amazonaws.com",  # SES v1 and v2 (by path, /v2/...)
    "events": f"events.{REGION}.amazonaws.com",
}
_STREAMS_HOST = f"streams.dynamodb.{REGION}.amazonaws.com"
_lock = threading.Lock()


class ResponseBody(BytesIO):
    """A response body as botocore reads it from urllib3 (moto's MockRawResponse does the same)."""

    def stream(self, **_: Any) -> Any:
        contents = self.read()
        while contents:
            yield contents
            contents = self.read()


def aws_url(url: str, headers: Mapping[str, Any]) -> str | None:
    """The AWS URL a request to the local server stands for (its path and query kept), from the
    service its signature names; None for a service not mapped here."""
    auth = headers.get("Authorization")
    if isinstance(auth, bytes):
        auth = auth.decode("latin-1")
    if not auth:
        return None
    try:
        scope = str(auth).split(",")[0].split()[1]  # Credential=<key>/<date>/<region>/<service>/aws4_request
        service = scope.split("/")[3]
    except IndexError:
        return None
    host = _HOSTS.get(service)
    if host is None:
        return None
    if service == "dynamodb":
        target = headers.get("X-Amz-Target") or b""
        if (target.decode() if isinstance(target, bytes) else str(target)).startswith("DynamoDBStreams"):
            host = _STREAMS_HOST
    parts = urlsplit(url)
    return f"https://{host}{parts.path or '/'}" + (f"?{parts.query}" if parts.query else "")


def answer(
    method: str, url: str, headers: Mapping[str, Any], body: bytes | None, lock: threading.Lock
) -> tuple[int, dict[str, str], bytes] | None:
    """moto's answer to one request for the local server at `url` (status, headers, body), run
    under the server's request `lock`; None when it is not one moto's backends here can take."""
    target = aws_url(url, headers)
    if target is None:
        return None
    request = AWSPreparedRequest(method, target, dict(headers), body, stream_output=False)  # type: ignore[arg-type]
    route = _route(target)
    with lock:
        response = _STUBBER.process_request(request) if route is None else _run(route, request)
    if response is None:
        return None
    status, response_headers, payload = response
    raw = payload.encode("utf-8") if isinstance(payload, str) else bytes(payload or b"")
    return int(status), {str(k): str(v) for k, v in dict(response_headers).items()}, raw


# moto's handler for each service's root URL, where every call of the JSON and query protocols
# goes (DynamoDB and its streams, SQS, SSM, SNS, SES v1, EventBridge). moto's stubber finds it
# anew for each request by trying every service's URL patterns, then every pattern of the
# service's backend: a tenth of a DynamoDB call's time in moto. Other paths (SES v2's, which name
# resources) are routed by the stubber as before.
_ROUTES: dict[str, Callable[..., Any] | None] = {}


def _route(target: str) -> Callable[..., Any] | None:
    parts = urlsplit(target)
    if parts.path not in ("", "/"):
        return None
    clean = f"{parts.scheme}://{parts.netloc}/"
    if clean not in _ROUTES:
        _ROUTES[clean] = _find_route(clean)
    return _ROUTES[clean]


def _find_route(clean: str) -> Callable[..., Any] | None:
    for service, pattern in backend_index.backend_url_patterns:
        if not pattern.match(clean):
            continue
        backend_dict = backends.get_backend(service)  # type: ignore[call-overload]
        if isinstance(backend_dict, BackendDict):
            regions = backend_dict[DEFAULT_ACCOUNT_ID]
            backend = regions["us-east-1"] if "us-east-1" in regions else regions["aws"]
        else:
            backend = backend_dict["global"]
        for url, method in backend.urls.items():
            if re.compile(url).match(clean):
                handler: Callable[..., Any] = method
                return handler
    return None


def _run(route: Callable[..., Any], request: AWSPreparedRequest) -> tuple[Any, Any, Any]:
    """What moto's stubber does with a request once it has found its handler."""
    normalized = normalize_request(request)
    try:
        recorder._record_request(normalized)
        status, headers, body = route(normalized, normalized.raw_url, normalized.headers)
    except HTTPException as exc:
        return exc.code, exc.get_headers(), exc.get_body()
    return status, headers, body


def request_bytes(body: Any) -> bytes | None:
    if body is None:
        return None
    if hasattr(body, "read"):
        body = body.read()
    return body.encode("utf-8") if isinstance(body, str) else bytes(body)


class _InProcess:
    """The before-send hook: a request for a served endpoint is answered here, not sent."""

    def __init__(self) -> None:
        # endpoint URL ("http://127.0.0.1:<port>") -> that server's request lock
        self.endpoints: dict[str, threading.Lock] = {}

    def __call__(self, request: AWSPreparedRequest, **_: Any) -> AWSResponse | None:
        url = str(request.url)
        served = self.endpoints.items()
        lock = next((lk for ep, lk in served if url == ep or url.startswith(ep + "/")), None)
        if lock is None:
            return None
        answered = answer(str(request.method), url, dict(request.headers), request_bytes(request.body), lock)
        if answered is None:
            return None
        status, headers, raw = answered
        return AWSResponse(url, status, headers, ResponseBody(raw))  # type: ignore[arg-type]


# moto's own stubber, used here only for its request routing (process_request); never enabled.
_STUBBER = BotocoreStubber()
_HOOK = _InProcess()
# Sessions made from now on carry the hook (as moto registers its own stubber); sessions made
# before, boto3's default one included, get it when a server is served (see _register).
BUILTIN_HANDLERS.append(("before-send", _HOOK))


def _register(session: botocore.session.Session) -> None:
    # Exactly once per session, whether it carries the hook already or not: botocore calls every
    # before-send handler even after one has answered, so a second copy ran each call twice in
    # moto (a message sent once was queued twice, a receive hid what it received). A session
    # made after this module was imported (boto3's default one, made during a first stack) has
    # it from BUILTIN_HANDLERS; unregistering a handler it lacks does nothing.
    session.unregister("before-send", _HOOK)  # type: ignore[arg-type]
    session.register("before-send", _HOOK)  # type: ignore[arg-type]


def serve_in_process(endpoint: str, lock: threading.Lock, sessions: tuple[Any, ...] = ()) -> None:
    """Answer calls to `endpoint` (a LockedMotoServer's URL) in this process, under its `lock`.
    `sessions` (boto3 or botocore) made before this module was imported get the hook too."""
    with _lock:
        for session in sessions:
            _register(getattr(session, "_session", session))
        _HOOK.endpoints = {**_HOOK.endpoints, endpoint.rstrip("/"): lock}


def stop_serving(endpoint: str) -> None:
    with _lock:
        _HOOK.endpoints = {k: v for k, v in _HOOK.endpoints.items() if k != endpoint.rstrip("/")}


def served_lock(endpoint: str) -> threading.Lock | None:
    """The request lock of the server at `endpoint` when this process answers its calls, else None
    (``nudge.tools.local.moto_peek`` reads such a server's backends directly)."""
    return _HOOK.endpoints.get(endpoint.rstrip("/"))
