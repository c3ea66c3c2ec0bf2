"""The local HTTP front door: what API Gateway (HTTP API, payload v2.0) does, on 127.0.0.1.

Each request becomes a real-shaped v2.0 event for the function its route names in
template.yaml, and the function's answer goes back as HTTP. Local-only routes read the
stack's state:

  GET  /_local/users/{id}      a user's usage state (traits, account, counts, milestones, ...),
                               lifecycle segment and segment history
  GET  /_local/accounts/{id}   an account's traits and usage rollup
  GET  /_local/decisions       every decision dispatched so far and its outcome (?user=ID: one user's)
  GET  /_local/outbox          messages sent (email, push, SMS): recipient, rule, subject, body, html
  GET  /_local/escalations     cases put on the customer-success queue
  GET  /_local/report          the `nudge report` HTML, from the stack's tables
  GET  /_local/escalations/open
                               the open escalations as `nudge escalations --json` shows them
                               (?all=1: the handled and expired ones too)
  POST /_local/escalations/{account_id}/handled
                               {"by": NAME, "note": TEXT} marks the account's open escalation
                               handled (404 when it has none), as `nudge escalations handle`
  GET  /_local/clock           the simulated time
  POST /_local/clock           {"now": ISO8601} moves the simulated clock forward and runs
                               everything due on the way (sweeps, the stream) before answering

The local routes that read state first let the stream settle (LocalStack.settle): what a client
posted has been evaluated by the time it looks, where in AWS it would take a second or so.

Request paths and bodies are never logged: user ids may be emails, bodies carry traits and
the Authorization header carries the write key. The access log has method, route and status.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import parse_qsl, unquote, urlsplit

from nudge.model.ledger import LedgerEntry
from nudge.model.segments import SegmentRecord
from nudge.model.state import UserState
from nudge.model.versioned import Versioned
from nudge.rulebook.ruleset import load_rules
from nudge.services.escalations import CaseRepository, NoOpenEscalation, handle_escalation, open_escalations
from nudge.tools.local.aws import ACCOUNT_ID, HandlerFailed
from nudge.tools.local.stack import ClockError, LocalStack, Route

if TYPE_CHECKING:
    from nudge.rulebook.ruleset import RuleSet

# API Gateway refuses payloads over 10 MB; the ingest API's own limit is far lower (500 KB a
# batch). This cap only keeps a runaway client from making the local server buffer it all.
MAX_BODY_BYTES = 5 * 1024 * 1024
API_ID = "nudgelocal"
# Idle keep-alive connections are closed after this long, so they don't hold threads forever.
IDLE_TIMEOUT_SECONDS = 30
# Headers that describe one hop, not the message: never passed on in either direction.
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}
)

access_log = logging.getLogger("nudge.tools.local.http")


class BadRequest(Exception):
    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class LocalApiServer:
    """ThreadingHTTPServer serving a LocalStack. ``port=0`` takes a free port."""

    def __init__(
        self, stack: LocalStack, host: str = "127.0.0.1", port: int = 0, *, quiet: bool = True
    ) -> None:
        self.stack = stack
        self.quiet = quiet
        self._httpd = _Server((host, port), _RequestHandler)
        self._httpd.api = self
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        return str(self._httpd.server_address[0])

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> Self:
        """Serve on a background thread."""
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name=f"nudge-local-http-{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve on this thread until interrupted (KeyboardInterrupt propagates)."""
        self._httpd.serve_forever()

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class _Server(ThreadingHTTPServer):
    # One thread per connection; 16+ clients connecting at once must not overflow the backlog.
    request_queue_size = 128
    daemon_threads = True
    allow_reuse_address = True
    api: LocalApiServer


class _RequestHandler(BaseHTTPRequestHandler):
    # HTTP/1.1: connections stay open between requests (SDKs and requests.Session reuse them).
    protocol_version = "HTTP/1.1"
    timeout = IDLE_TIMEOUT_SECONDS
    server: _Server
    server_version = "nudge-local"

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_OPTIONS(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def __getattr__(self, name: str) -> Any:
        # Any other method (TRACE, QUERY, ...) is routed like the rest: API Gateway answers a
        # method no route has with 404 JSON, where http.server would answer 501.
        if name.startswith("do_") and name[3:].isupper():
            return self._dispatch
        raise AttributeError(name)

    # -- dispatch

    def _dispatch(self) -> None:
        started = time.monotonic()
        api = self.server.api
        split = urlsplit(self.path)
        path, query = split.path or "/", split.query
        route_label = f"{self.command} -"
        self._status: int | None = None  # one handler serves every request of a connection
        try:
            body = self._read_body()
            if path.startswith("/_local/") or path == "/_local":
                route_label = f"{self.command} /_local"
                status, payload = _local(api.stack, self.command, path, query, body)
                self._send_json(status, payload)
            else:
                found = api.stack.match(self.command, path)
                if found is None:
                    # API Gateway's own answer for a route it doesn't have.
                    self._send_json(HTTPStatus.NOT_FOUND, {"message": "Not Found"})
                else:
                    route, params = found
                    route_label = route.key
                    event = self._event(route, params, path, query, body)
                    self._send_lambda_result(api.stack.invoke(route, event), event)
        except BadRequest as exc:
            self.close_connection = True
            self._send_json(exc.status, {"message": exc.message}, close=True)
        except HandlerFailed:
            self._send_json(HTTPStatus.INTERNAL_SERVER_ERROR, {"message": "Internal Server Error"})
        except (ConnectionError, TimeoutError):
            self.close_connection = True
            return
        except Exception:
            # A bug in the local server itself: say so, and leave the trace on stderr.
            access_log.exception("local server error on %s", route_label)
            self._send_json(
                HTTPStatus.INTERNAL_SERVER_ERROR, {"message": "Internal Server Error"}, close=True
            )
        finally:
            if not api.quiet:
                elapsed = (time.monotonic() - started) * 1000
                print(
                    f"{route_label} -> {self._status or '-'} ({elapsed:.0f} ms)",
                    file=sys.stderr,
                )

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._read_chunked()
        raw_length = self.headers.get("Content-Length")
        if raw_length is None:
            return b""
        try:
            length = int(raw_length)
            if length < 0:
                raise ValueError(raw_length)
        except ValueError:
            raise BadRequest(HTTPStatus.BAD_REQUEST, "Content-Length is not a number") from None
        if length > MAX_BODY_BYTES:
            # Refused unread; the connection then can't be reused (the body is still on it).
            raise BadRequest(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"body of {length} bytes is over the {MAX_BODY_BYTES}-byte limit",
            )
        body = self.rfile.read(length)
        if len(body) < length:
            raise ConnectionError("the client closed the connection mid-body")
        return body

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise BadRequest(HTTPStatus.BAD_REQUEST, "malformed chunked body") from None
            if size == 0:
                # Trailers, if any, end with an empty line.
                while self.rfile.readline(1024).strip():
                    pass
                return b"".join(chunks)
            total += size
            if total > MAX_BODY_BYTES:
                raise BadRequest(
                    HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body is over the {MAX_BODY_BYTES}-byte limit"
                )
            chunks.append(self.rfile.read(size))
            self.rfile.readline(8)  # the CRLF after each chunk

    # -- the API Gateway event

    def _event(
        self, route: Route, params: dict[str, str], path: str, query: str, body: bytes
    ) -> dict[str, Any]:
        headers: dict[str, str] = {}
        cookies: list[str] = []
        for name, value in self.headers.items():
            lower = name.lower()
            if lower in HOP_BY_HOP or (lower == "content-length" and not body):
                continue
            if lower == "cookie":
                cookies.extend(c.strip() for c in value.split(";") if c.strip())
                continue
            # API Gateway joins repeated headers with commas.
            headers[lower] = f"{headers[lower]},{value}" if lower in headers else value
        now = self.server.api.stack.clock.now()
        request_id = base64.b64encode(os.urandom(10)).decode()
        http_context = {
            "method": self.command,
            "path": path,
            "protocol": self.request_version,
            "sourceIp": self.client_address[0],
            "userAgent": headers.get("user-agent", ""),
        }
        event: dict[str, Any] = {
            "version": "2.0",
            "routeKey": route.key,
            "rawPath": path,
            "rawQueryString": query,
            "headers": headers,
            "requestContext": {
                "accountId": ACCOUNT_ID,
                "apiId": API_ID,
                "domainName": headers.get("host", f"{self.server.api.host}:{self.server.api.port}"),
                "domainPrefix": API_ID,
                "http": http_context,
                "requestId": request_id,
                "routeKey": route.key,
                "stage": "$default",
                "time": now.astimezone(UTC).strftime("%d/%b/%Y:%H:%M:%S +0000"),
                "timeEpoch": int(now.timestamp() * 1000),
            },
            "isBase64Encoded": False,
        }
        if cookies:
            event["cookies"] = cookies
        if query:
            params_q: dict[str, str] = {}
            for key, value in parse_qsl(query, keep_blank_values=True):
                params_q[key] = f"{params_q[key]},{value}" if key in params_q else value
            event["queryStringParameters"] = params_q
        if params:
            event["pathParameters"] = {key: unquote(value) for key, value in params.items()}
        if body:
            event["body"], event["isBase64Encoded"] = _event_body(body, headers)
        return event

    # -- responses

    def _send_lambda_result(self, result: dict[str, Any], event: dict[str, Any]) -> None:
        status = int(result.get("statusCode", 200))
        body_value = result.get("body")
        payload: bytes
        if body_value is None:
            payload = b""
        elif result.get("isBase64Encoded"):
            try:
                payload = base64.b64decode(body_value)
            except (binascii.Error, ValueError):
                # API Gateway fails the integration when the function's base64 is broken.
                self._send_json(HTTPStatus.INTERNAL_SERVER_ERROR, {"message": "Internal Server Error"})
                return
        else:
            payload = str(body_value).encode("utf-8")
        headers = {str(k): str(v) for k, v in (result.get("headers") or {}).items()}
        self._status = status
        self.send_response(status)
        for name, value in headers.items():
            if name.lower() in HOP_BY_HOP or name.lower() == "content-length":
                continue
            self.send_header(name, value)
        for cookie in result.get("cookies") or []:
            self.send_header("Set-Cookie", str(cookie))
        self.send_header("apigw-requestid", str(event["requestContext"]["requestId"]))
        self._end(payload)

    def _send_json(self, status: int, payload: Any, *, close: bool = False) -> None:
        html = isinstance(payload, RawHtml)
        data = payload.text.encode("utf-8") if html else json.dumps(payload, default=str).encode("utf-8")
        self._status = int(status)
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8" if html else "application/json")
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self._end(data)

    def _end(self, payload: bytes) -> None:
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD" and payload:
            self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        # BaseHTTPRequestHandler logs the request line (path included): _dispatch logs instead.
        pass


def _event_body(body: bytes, headers: dict[str, str]) -> tuple[str, bool]:
    """API Gateway passes text bodies as they are and base64-encodes the others."""
    if headers.get("content-encoding", "").strip().lower() == "gzip":
        return base64.b64encode(body).decode("ascii"), True
    try:
        return body.decode("utf-8"), False
    except UnicodeDecodeError:
        return base64.b64encode(body).decode("ascii"), True


# ---------------------------------------------------------------------------- local-only routes


@dataclass(frozen=True)
class RawHtml:
    """A local route's answer that is a page, not JSON."""

    text: str


def _local(stack: LocalStack, method: str, path: str, query: str, body: bytes) -> tuple[int, Any]:
    parts = [unquote(p) for p in path.split("/")[2:]]
    reading = method in ("GET", "HEAD")
    if reading and len(parts) == 2 and parts[0] == "users" and parts[1]:
        return _user(stack, parts[1])
    if reading and len(parts) == 2 and parts[0] == "accounts" and parts[1]:
        return _account(stack, parts[1])
    if reading and parts == ["decisions"]:
        return _decisions(stack, dict(parse_qsl(query)))
    if reading and parts == ["report"]:
        return HTTPStatus.OK, RawHtml(stack.report_html())
    if reading and parts == ["outbox"]:
        stack.settle()
        user = dict(parse_qsl(query)).get("user")
        sent = [m for m in stack.outbox() if user is None or m["user_id"] == user]
        return HTTPStatus.OK, {"count": len(sent), "messages": sent}
    if reading and parts == ["escalations"]:
        stack.settle()
        cases = [
            {**m.body, "queued_at": m.queued_at.isoformat()}
            for m in stack.escalations()
            if isinstance(m.body, dict)
        ]
        return HTTPStatus.OK, {"count": len(cases), "escalations": cases}
    if reading and parts == ["escalations", "open"]:
        return _open_escalations(stack, dict(parse_qsl(query)))
    if (
        method == "POST"
        and len(parts) == 3
        and parts[0] == "escalations"
        and parts[1]
        and parts[2] == "handled"
    ):
        return _handle_escalation(stack, parts[1], body)
    if parts == ["clock"] and reading:
        return HTTPStatus.OK, {"now": stack.clock.now().isoformat()}
    if parts == ["clock"] and method == "POST":
        return _move_clock(stack, body)
    return HTTPStatus.NOT_FOUND, {"message": f"no local route {method} {path}"}


def user_document(
    state: UserState, version: int, record: Versioned[SegmentRecord] | None = None
) -> dict[str, Any]:
    """What GET /_local/users/{id} answers: the usage state in plain JSON terms, and the
    evaluator's record of the user (lifecycle segment, transitions, next re-check)."""
    dumped = state.model_dump(mode="json")
    segments = record.value.segments if record is not None else None
    check = record.value.next_check_at if record is not None else None
    return {
        "user_id": state.user_id,
        "version": version,
        "account_id": state.account_id,
        "traits": state.trait_values(),
        "event_counts": state.event_counts,
        "milestones": dumped["milestones"],
        # The lifecycle segment is the one segment a user is in (the first that matches).
        "segments": [segments.segment] if segments is not None and segments.segment else [],
        "segment_since": segments.since.isoformat() if segments is not None and segments.since else None,
        # Oldest first, bounded by the evaluator (the latest transitions are kept).
        "segment_history": [
            {"from": t.from_, "to": t.to, "at": t.at.isoformat()}
            for t in (segments.history if segments is not None else [])
        ],
        "next_check_at": check.isoformat() if check is not None else None,
        "first_seen": dumped["first_seen"],
        "last_seen": dumped["last_seen"],
        "last_meaningful": dumped["last_meaningful"],
        "features": {
            name: {
                "first": f["first"],
                "last": f["last"],
                "count": f["count"],
                "distinct_days": len(f["days"]),
            }
            for name, f in dumped["features"].items()
        },
        "weeks": dumped["weeks"],
    }


def _user(stack: LocalStack, user_id: str) -> tuple[int, Any]:
    stack.settle()
    found = stack.store.load_users([user_id]).get(user_id)
    if found is None:
        return HTTPStatus.NOT_FOUND, {"message": "no such user", "user_id": user_id}
    record = stack.segments.load([user_id])[user_id]
    # Version 0: never evaluated (no segment record yet).
    document = user_document(found.value, found.version, record if record.version else None)
    document["ledger"] = [ledger_document(e) for e in stack.ledger.entries_of(user_id)]
    return HTTPStatus.OK, document


def _account(stack: LocalStack, account_id: str) -> tuple[int, Any]:
    stored = stack.store.load_account(account_id)
    rollup = stack.store.load_rollup(account_id)
    if stored is None and not rollup.weeks and not rollup.feature_adopters:
        return HTTPStatus.NOT_FOUND, {"message": "no such account", "account_id": account_id}
    return HTTPStatus.OK, {
        "account_id": account_id,
        "version": stored.version if stored else 0,
        "traits": stored.value.trait_values() if stored else {},
        "rollup": rollup.model_dump(mode="json"),
    }


def ledger_document(entry: LedgerEntry) -> dict[str, Any]:
    """A ledger entry as the local API shows it: the decision, then what became of it."""
    return {
        **entry.decision.model_dump(mode="json"),
        "outcome": entry.outcome,
        "outcome_reason": entry.reason,
        "status": entry.status,
        "deliver_at": entry.deliver_at.isoformat() if entry.deliver_at else None,
        "recorded_at": entry.recorded_at.isoformat(),
        "updated_at": entry.updated_at.isoformat(),
    }


def _decisions(stack: LocalStack, query: dict[str, str]) -> tuple[int, Any]:
    stack.settle()
    user = query.get("user")
    decisions = [ledger_document(e) for e in stack.decisions() if user is None or e.decision.user == user]
    return HTTPStatus.OK, {"count": len(decisions), "decisions": decisions}


def _move_clock(stack: LocalStack, body: bytes) -> tuple[int, Any]:
    try:
        requested = json.loads(body or b"{}").get("now")
        when = datetime.fromisoformat(str(requested))
    except (ValueError, AttributeError, TypeError):
        return HTTPStatus.BAD_REQUEST, {"message": 'send {"now": "<ISO 8601 time with timezone>"}'}
    runs = sum(len(s.runs) for s in stack.schedules)
    try:
        now = stack.advance_clock(when)
    except ClockError as exc:
        return HTTPStatus.CONFLICT, {"message": str(exc)}
    # The answer comes once everything due on the way has run and the stream is quiet.
    return HTTPStatus.OK, {"now": now.isoformat(), "sweeps": sum(len(s.runs) for s in stack.schedules) - runs}


@functools.lru_cache(maxsize=4)
def _rules(rules_dir: Path) -> RuleSet:
    # Loaded once per directory, as the functions' wiring loads them once per container (each
    # load compiles new durable_rules rulesets, which are never freed).

    return load_rules(rules_dir)


def _open_escalations(stack: LocalStack, query: dict[str, str]) -> tuple[int, Any]:
    """The CS view (nudge.services.escalations) on the stack's tables, at the simulated now."""

    stack.settle()
    rules = _rules(stack.rules_dir)
    include_closed = query.get("all", "").lower() in ("1", "true", "yes")
    view = open_escalations(
        CaseRepository(stack.ledger, stack.store), rules, stack.clock.now(), include_closed=include_closed
    )
    return HTTPStatus.OK, view.model_dump(mode="json")


def _handle_escalation(stack: LocalStack, account_id: str, body: bytes) -> tuple[int, Any]:

    try:
        request = json.loads(body or b"{}")
        by, note = request.get("by"), request.get("note") or ""
        if not isinstance(by, str) or not by.strip() or not isinstance(note, str):
            raise ValueError(by)
    except (ValueError, AttributeError):
        return HTTPStatus.BAD_REQUEST, {"message": 'send {"by": "<who handled it>", "note": "<optional>"}'}
    stack.settle()
    rules = _rules(stack.rules_dir)
    try:
        handled = handle_escalation(
            CaseRepository(stack.ledger, stack.store), rules, account_id, by, note, stack.clock.now()
        )
    except NoOpenEscalation as exc:
        return HTTPStatus.NOT_FOUND, {"message": str(exc), "account_id": account_id}
    return HTTPStatus.OK, handled.model_dump(mode="json")
