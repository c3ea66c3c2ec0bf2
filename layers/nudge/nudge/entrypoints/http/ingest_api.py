"""The Segment-compatible ingest HTTP API (Powertools Event Handler, OpenAPI from these models)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Body, Path
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from aws_lambda_powertools.utilities.typing import LambdaContext

from nudge import clock
from nudge.bootstrap.api import services
from nudge.domain.keys import KeyKind, KeyRecord, origin_allowed
from nudge.entrypoints.http import privacy_api
from nudge.entrypoints.http.access import (
    INGEST_PATHS,
    INGEST_SECURITY,
    cors_route,
    granted,
    preflight_granted,
    scope_of,
    security_schemes,
)
from nudge.entrypoints.http.body import BodyError, as_json, header, load_json, normalize, take_body_key
from nudge.entrypoints.http.inbox_api import SCRIPT_PATH
from nudge.entrypoints.http.inbox_api import router as inbox_router
from nudge.entrypoints.http.privacy_api import UNSUBSCRIBE_PATH, refused
from nudge.entrypoints.http.privacy_api import router as privacy_router
from nudge.entrypoints.http.sdk_settings import SdkSettings, sdk_settings, settings_key
from nudge.entrypoints.http.shapes import ErrorItem, IngestResponse
from nudge.model.errors import StoreUnavailable
from nudge.model.messages import (
    Alias,
    Batch,
    Group,
    Identify,
    InvalidMessage,
    Message,
    Page,
    Screen,
    Track,
    build_models,
    capped,
    describe,
)
from nudge.model.numbers import request_scope
from nudge.observability import logger, metrics
from nudge.services.auth import Forbidden, KeysUnavailable, Unauthorized, authorize
from nudge.services.buffer import enqueue
from nudge.services.client_keys import DROPPED_HINT, Sensitive, screen_messages
from nudge.services.ingest import Contention, IngestResult, Problem, ingest
from nudge.services.rate_limit import check_rate

API_TITLE = "Nudge ingest API"
API_VERSION = "1.0.0"
# No write key: the OpenAPI document, unsubscribe links (their signed token is the credential) and
# the in-app script.
PUBLIC_PATHS = {"/v1/openapi.json", UNSUBSCRIBE_PATH, SCRIPT_PATH}

# debug=False whatever POWERTOOLS_DEV says: in debug mode the resolver prints every event, write
# key and traits included, to stdout, which Lambda keeps in the logs. Bodies are read by
# body.load_json: an integer too long for Python's json is a per-message error.
app = APIGatewayHttpResolver(enable_validation=True, debug=False, json_body_deserializer=load_json)
app.include_router(privacy_router)
app.include_router(inbox_router)
# Where resolve() leaves the request's key record for the routes (Powertools clears it per request).
API_KEY = "api_key"
# Set by resolve() for the buffered front door's requests (the function URL's handler).
FRONT_DOOR = "front_door"


RouteFunction = TypeVar("RouteFunction", bound=Callable[..., Any])


class RateLimited(Exception):
    def __init__(self, retry_after: int) -> None:
        super().__init__(f"retry after {retry_after}s")
        self.retry_after = retry_after


def _json(
    status: int, payload: IngestResponse, headers: dict[str, str] | None = None
) -> Response[IngestResponse]:
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body=payload,
        headers=headers,
    )


def _items(problems: list[Problem]) -> list[ErrorItem]:
    return [ErrorItem(index=p.index, field=p.field, message=p.message) for p in problems]


def _run(messages: list[tuple[int, Message]], rejected: list[Problem]) -> Response[IngestResponse]:
    svc = services()
    key: KeyRecord | None = app.context.get(API_KEY)
    # No key record here would be a wiring fault: judged as a client key's, never a server's.
    client = key is None or key.kind is KeyKind.CLIENT
    if key is not None and client:
        _limit(key, len(messages) + len(rejected))
    dropped = screen_messages(
        messages, client=client, sensitive=Sensitive.of(svc.plan), secrets=svc.user_token_secrets
    )
    if dropped:
        metrics.add_metric(name="SensitiveFieldsDropped", unit="Count", value=len(dropped))
        logger.info("sensitive fields dropped", extra={"fields": sorted({d.field for d in dropped})})
    result = IngestResult()
    if messages:
        # The request id the handler made this invocation's correlation id: kept on each user's
        # state written, so evaluate, dispatch and the send log under it too.
        correlation_id = logger.get_correlation_id() or ""
        if app.context.get(FRONT_DOOR) and svc.buffer is not None:
            # The front door: checked and answered now, folded with other requests' messages by
            # the ingest queue's consumer (nudge.services.buffer).
            result = enqueue(
                messages, svc.plan, svc.buffer, clock.now(), svc.limits, request_id=correlation_id
            )
        else:
            result = ingest(
                messages, svc.plan, svc.store, clock.now(), svc.limits, correlation_id=correlation_id
            )
    errors = sorted([*rejected, *result.errors], key=lambda p: (p.index, p.field))
    metrics.add_metric(name="EventsAccepted", unit="Count", value=result.accepted)
    metrics.add_metric(name="EventsRejected", unit="Count", value=len(errors))
    logger.info(
        "ingested",
        extra={
            "accepted": result.accepted,
            "rejected": len(errors),
            "users_written": result.users_written,
            "accounts_written": result.accounts_written,
            "conflicts": result.conflicts,
        },
    )
    warnings = [*result.warnings, *(Problem(d.index, d.field, DROPPED_HINT) for d in dropped)]
    warnings.sort(key=lambda p: (p.index, p.field))
    body = IngestResponse(
        success=not errors, accepted=result.accepted, errors=_items(errors), warnings=_items(warnings)
    )
    return _json(400 if errors else 200, body)


def _limit(key: KeyRecord, messages: int) -> None:
    """A client key's rate limit (RateLimited when spent); a limiter outage lets the request through."""
    decision = check_rate(services().rate_counter, key, messages, clock.now())
    if decision.degraded:
        metrics.add_metric(name="RateLimiterUnavailable", unit="Count", value=1)
        logger.warning("rate limiter unavailable; request let through", extra={"key_id": key.key_id})
    if not decision.allowed:
        metrics.add_metric(name="RateLimited", unit="Count", value=1)
        logger.info("rate limited", extra={"key_id": key.key_id, "retry_after": decision.retry_after})
        raise RateLimited(decision.retry_after)


_RESPONSES: dict[int, OpenAPIResponse] = {
    200: {"description": "All messages accepted."},
    400: {"description": "Some or all messages were refused; valid ones in a batch were kept."},
    401: {"description": "Missing, unknown or revoked key."},
    403: {"description": "The key's kind may not do this, or the page's origin is not allowed for it."},
    413: {"description": "Body (or one message) over the size limit."},
    429: {"description": "The client key's rate limit is spent; retry after Retry-After seconds."},
    503: {"description": "Storage busy or unavailable; retry with backoff."},
}


def _tracking(path: str, short: str, summary: str) -> Callable[[RouteFunction], RouteFunction]:
    """A tracking route at `path` and at `short`, the path Segment's browser SDK posts to (/v1/t,
    /v1/i, ...; /v1/b for batch, which analytics-kotlin and analytics-swift use too). Both are in
    the OpenAPI document, as API Gateway serves both (template.yaml)."""

    def register(route: RouteFunction) -> RouteFunction:
        common: dict[str, Any] = {"responses": _RESPONSES, "tags": ["tracking"], "security": INGEST_SECURITY}
        app.post(short, summary=f"{summary}: the short path SDKs post to, as {path}", **common)(route)
        registered: RouteFunction = app.post(path, summary=summary, **common)(route)
        return registered

    return register


@_tracking("/v1/track", "/v1/t", "Record what a user did")
def track(message: Annotated[Track, Body()]) -> Response[IngestResponse]:
    return _run([(0, message)], [])


@_tracking("/v1/page", "/v1/p", "Record a page view (counted as the event page_viewed)")
def page(message: Annotated[Page, Body()]) -> Response[IngestResponse]:
    return _run([(0, message)], [])


@_tracking("/v1/screen", "/v1/s", "Record a mobile screen view (counted as the event screen_viewed)")
def screen(message: Annotated[Screen, Body()]) -> Response[IngestResponse]:
    return _run([(0, message)], [])


@_tracking("/v1/identify", "/v1/i", "Set a user's traits")
def identify(message: Annotated[Identify, Body()]) -> Response[IngestResponse]:
    return _run([(0, message)], [])


@_tracking("/v1/group", "/v1/g", "Tie a user to an account and set its traits")
def group(message: Annotated[Group, Body()]) -> Response[IngestResponse]:
    return _run([(0, message)], [])


@_tracking("/v1/alias", "/v1/a", "Link a previous id to the user: their histories merge into one profile")
def alias(message: Annotated[Alias, Body()]) -> Response[IngestResponse]:
    return _run([(0, message)], [])


@_tracking("/v1/batch", "/v1/b", "Send many messages at once")
def batch(request: Annotated[Batch, Body()]) -> Response[IngestResponse]:
    settings = services().settings
    if len(request.batch) > settings.max_batch_messages:
        problem = Problem(
            0,
            "batch",
            f"batch holds {len(request.batch)} messages; the limit is {settings.max_batch_messages}",
        )
        return _json(413, IngestResponse(success=False, errors=_items([problem])))
    raw = app.current_event.json_body.get("batch", [])
    check_sizes = len(app.current_event.body or "") > settings.max_message_bytes
    messages: list[tuple[int, Message]] = []
    rejected: list[Problem] = []
    for index, entry in enumerate(request.batch):
        if isinstance(entry, InvalidMessage):
            rejected.extend(Problem(index, field, message) for field, message in entry.errors)
        elif check_sizes and len(json.dumps(raw[index]).encode()) > settings.max_message_bytes:
            rejected.append(
                Problem(
                    index, "message", f"message is over the {settings.max_message_bytes}-byte limit; trim it"
                )
            )
        else:
            if request.context:
                # The batch's context is each message's, under what the message says itself.
                entry.context = {**request.context, **entry.context}
            messages.append((index, entry))
    return _run(messages, rejected)


@app.get(
    "/v1/projects/<writeKey>/settings",
    summary="The settings an SDK fetches at start-up, pointing it at this API",
    responses={
        200: {"description": "Segment's CDN settings document."},
        # Refused before routing, in the tracking routes' shape.
        401: {**_RESPONSES[401], "content": {content_types.APPLICATION_JSON: {"model": IngestResponse}}},
    },
    tags=["tracking"],
)
def settings_document(write_key: Annotated[str, Path(alias="writeKey")]) -> Response[SdkSettings]:
    event = app.current_event
    host = event.request_context.domain_name or event.headers.get("host") or ""
    # API Gateway says how the client came in; so does the local front door (http).
    protocol = event.headers.get("x-forwarded-proto") or "https"
    return Response(200, content_types.APPLICATION_JSON, sdk_settings(write_key, host, protocol))


@app.get("/v1/openapi.json", summary="This API's OpenAPI document", include_in_schema=False)
def openapi() -> Response[Any]:
    return Response(200, content_types.APPLICATION_JSON, openapi_json())


def openapi_json() -> str:
    return app.get_openapi_json_schema(
        title=API_TITLE, version=API_VERSION, security_schemes=security_schemes()
    )


@app.exception_handler(RequestValidationError)
def _invalid(exc: RequestValidationError) -> Response[Any]:
    items = [
        ErrorItem(index=0, field=field, message=message)
        for field, message in capped([describe(err) for err in exc.errors()])
    ]
    if app.current_event.path == UNSUBSCRIBE_PATH:
        # Someone holding a cut-short link: a page that says what to do, not a field list.
        if any(i.field.rpartition(".")[2] == "token" for i in items):
            return refused(400, "token", privacy_api.INVALID_LINK, "This link isn't valid")
        return refused(400, items[0].field, items[0].message, "This link isn't valid")
    metrics.add_metric(name="EventsRejected", unit="Count", value=1)
    return _json(400, IngestResponse(success=False, errors=items))


@app.exception_handler(RateLimited)
def _rate_limited(exc: RateLimited) -> Response[IngestResponse]:
    wait = str(exc.retry_after)
    item = ErrorItem(
        index=None,
        field="",
        message=f"this key's rate limit is spent; retry in {wait}s (batch more per call)",
    )
    # analytics-next waits x-ratelimit-reset seconds; other clients read Retry-After.
    return _json(
        429, IngestResponse(success=False, errors=[item]), {"Retry-After": wait, "x-ratelimit-reset": wait}
    )


@app.exception_handler(Contention)
def _contended(exc: Contention) -> Response[IngestResponse]:
    logger.warning("write contention", extra={"detail": str(exc)})
    item = ErrorItem(index=None, field="", message="too many concurrent writes for one user; retry shortly")
    return _json(503, IngestResponse(success=False, errors=[item]), {"Retry-After": "1"})


@app.exception_handler(StoreUnavailable)
def _store_down(exc: StoreUnavailable) -> Response[IngestResponse]:
    logger.error("store unavailable", extra={"detail": str(exc)})
    item = ErrorItem(index=None, field="", message="storage is unavailable; retry with backoff")
    return _json(503, IngestResponse(success=False, errors=[item]), {"Retry-After": "2"})


def _early(status: int, field: str, message: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """A response for what is refused before routing (auth, size, encoding), in the same shape."""
    body = IngestResponse(success=False, errors=[ErrorItem(index=None, field=field, message=message)])
    metrics.add_metric(name="RequestsRefused", unit="Count", value=1)
    return {
        "statusCode": status,
        "headers": {"Content-Type": content_types.APPLICATION_JSON, **(headers or {})},
        "body": body.model_dump_json(),
        "isBase64Encoded": False,
    }


BATCH_PATHS = {"/v1/batch", "/v1/b"}


def cold_start() -> None:
    """Load settings, the tracking plan and clients now: a bad rule file fails the cold start.
    Build the message models every request validates."""
    services()
    build_models()


def resolve(event: dict[str, Any], context: LambdaContext, *, front_door: bool = False) -> dict[str, Any]:
    """Answer preflights; bound and inflate the body; authenticate, authorize and check the page's
    origin; then route. Keys are never logged. `front_door`: the buffered front door's request
    (tracking routes only; messages go on the ingest queue, nudge.services.buffer)."""
    path = event.get("rawPath") or ""
    method = str(((event.get("requestContext") or {}).get("http") or {}).get("method") or "").upper()
    if method == "OPTIONS":
        return _preflight(path, header(event, "origin"))
    svc = services()
    # Public routes are bounded too: a one-click POST body is a few bytes.
    limit = svc.settings.max_batch_bytes if path in BATCH_PATHS else svc.settings.max_message_bytes
    try:
        event = normalize(event, limit)
    except BodyError as exc:
        return _early(exc.status, exc.field, exc.message)
    if front_door and svc.buffer is None:
        logger.error("front door without NUDGE_INGEST_QUEUE_URL: nowhere to put messages")
        return _early(
            503, "", "this front door has no ingest queue configured; retry later", {"Retry-After": "60"}
        )
    if front_door and not _front_door_route(path):
        return _early(
            404,
            "path",
            f"{path} is not served here: this front door takes tracking calls only; "
            "use the API's URL (ApiUrl) for the other routes",
        )
    if path in PUBLIC_PATHS:
        public: dict[str, Any] = app.resolve(event, context)
        return public
    headers: dict[str, str] = {}
    key: str | None = settings_key(path)
    # The key in a settings path is the one to check, whatever a header says.
    if key is None:
        event, key = take_body_key(event)
        headers = event.get("headers") or {}
    origin = header(event, "origin")
    try:
        record = svc.keys.authenticate(headers, key)
    except Unauthorized as exc:
        return _early(401, "authorization", str(exc), {"WWW-Authenticate": 'Basic realm="nudge"'})
    except KeysUnavailable as exc:
        logger.error("keys unavailable", extra={"cause": type(exc.__cause__).__name__})
        return _early(503, "authorization", str(exc), {"Retry-After": "2"})
    try:
        _admit(record, path, origin)
    except Forbidden as exc:
        logger.info("key refused", extra={"kind": record.kind.value, "key_id": record.key_id})
        return _early(403, "authorization", str(exc))
    app.append_context(**{API_KEY: record, FRONT_DOOR: front_door})  # type: ignore[no-untyped-call]
    # Segment's routes take JSON whatever the declared type, as Segment's and RudderStack's
    # servers do: text/plain (the browser and Kotlin SDKs), the form type rudder-sdk-node 3
    # declares on its gzip batches, anything. Declared as JSON, no form parser runs either
    # (a multipart type without a boundary once made Powertools' validation fail with a 500).
    # Reading the body watches its numbers: when none could be out of range, the messages are not
    # walked for them (nudge.model.numbers), for this request only.
    with request_scope():
        result: dict[str, Any] = app.resolve(as_json(event), context)
    if origin is not None:
        result["headers"] = {**(result.get("headers") or {}), **granted(origin)}
    return result


def _front_door_route(path: str) -> bool:
    """What the buffered front door (the function URL) serves: tracking calls and the settings SDKs
    fetch; its role may write nothing else (privacy, inbox and unsubscribe stay on the HTTP API)."""
    return path in INGEST_PATHS or settings_key(path) is not None


def _admit(record: KeyRecord, path: str, origin: str | None) -> None:
    """Forbidden unless the key's kind may call `path`, and from the page's origin if it has one."""
    authorize(record, scope_of(path))
    if origin is not None and not origin_allowed(record, origin):
        raise Forbidden(
            f"this {record.kind.value} key may not be used from {origin}: "
            + (
                "add the origin to the client key (nudge keys create --origin)"
                if record.kind is KeyKind.CLIENT
                else "pages must use a client key; server and admin keys stay on servers"
            )
        )


def _preflight(path: str, origin: str | None) -> dict[str, Any]:
    """A CORS preflight (no key in it): granted when some live client key allows the origin."""
    if origin is None or not cors_route(path):
        return _early(403, "origin", "no CORS for this route: only the tracking routes are called from pages")
    try:
        allowed = services().keys.preflight(origin)
    except KeysUnavailable as exc:
        logger.error("keys unavailable", extra={"cause": type(exc.__cause__).__name__})
        return _early(503, "authorization", str(exc), {"Retry-After": "2"})
    if not allowed:
        return _early(403, "origin", f"no client key allows {origin}: add it (nudge keys create --origin)")
    return {"statusCode": 204, "headers": preflight_granted(origin), "body": "", "isBase64Encoded": False}
