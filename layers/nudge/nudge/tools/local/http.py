"""The local HTTP front door: what API Gateway (HTTP API, payload v2.0) does, on 127.0.0.1.

Each request becomes a real-shaped v2.0 event for the function its route names in
template.yaml, and the function's answer goes back as HTTP. Local-only routes under /_local/
read the stack's state and move its clock (``nudge.tools.local.local_routes`` lists them).

Request paths and bodies are never logged: user ids may be emails, bodies carry traits and
the Authorization header carries the write key. The access log has method, route and status.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import sys
import threading
import time
from datetime import UTC
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qsl, unquote, urlsplit

from nudge.tools.local.aws import ACCOUNT_ID, HandlerFailed
from nudge.tools.local.functions import Route
from nudge.tools.local.local_routes import RawHtml, local_route
from nudge.tools.local.stack import LocalStack

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


# A server listening on every interface is reached, from this machine, on the loopback address.
_WILDCARD_HOSTS = {"", "0.0.0.0"}  # noqa: S104 - what is compared, not what is bound


class LocalApiServer:
    """ThreadingHTTPServer serving a LocalStack. ``port=0`` takes a free port.

    Make it before starting the stack: it binds at once, and tells the stack its address
    (``LocalStack.serve_at``), so links in messages point at the port really served."""

    def __init__(
        self,
        stack: LocalStack,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        quiet: bool = True,
        front_door: bool = False,
    ) -> None:
        self.stack = stack
        self.quiet = quiet
        # The buffered front door: every request to the template's function-URL function, as its
        # URL would send it (the API's links keep pointing at the API server).
        self.front_door = front_door
        if front_door and stack.front_door_route is None:
            raise ValueError("the template has no function with a FunctionUrlConfig to serve as front door")
        self._httpd = _Server((host, port), _RequestHandler)
        self._httpd.api = self
        self._thread: threading.Thread | None = None
        if front_door:
            return
        try:
            stack.serve_at(self.public_url)
        except BaseException:
            self._httpd.server_close()
            raise

    @property
    def host(self) -> str:
        return str(self._httpd.server_address[0])

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def public_url(self) -> str:
        """Where a browser on this machine reaches the API: the loopback address for a server
        listening everywhere (links in messages use it; RFC 8058 allows plain http only there)."""
        host = "127.0.0.1" if self.host in _WILDCARD_HOSTS else self.host
        return f"http://{host}:{self.port}"

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
    # The headers and the body go out in two writes: with Nagle's algorithm the second waited for
    # the client's delayed ACK, some 40 ms on every request (Linux) whatever the handler took.
    disable_nagle_algorithm = True
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
                status, payload = local_route(api.stack, self.command, path, query, body)
                self._send_json(status, payload)
            else:
                front = api.stack.front_door_route if api.front_door else None
                found = (front, {}) if front is not None else api.stack.match(self.command, path)
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
        # As API Gateway adds them (https there; this front door is http).
        headers.setdefault("x-forwarded-proto", "http")
        headers.setdefault("x-forwarded-port", str(self.server.api.port))
        headers.setdefault("x-forwarded-for", self.client_address[0])
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
