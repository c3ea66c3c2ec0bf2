"""boto3 calls from the local stack's worker containers, carried to its moto server over a pipe.

A worker process ("container", ``nudge.tools.local.containers``) cannot share the stack's moto
backends, which live in the stack's process. Over HTTP each of its calls opened a connection
(werkzeug closes it after every answer), and the server parsed HTTP and made a thread for it.
``MotoRelay`` (in the stack's process) listens on a Unix socket; in each worker, ``relay_to``
hooks boto3's send step so that a request for the stack's endpoint goes down one kept-open
connection per worker thread instead, and is answered by ``moto_direct.answer``: the same
backends, routing and response code, under the server's request lock. boto3 builds, signs and
parses each call as it does against AWS. A request the relay cannot answer (a service not mapped in
``moto_direct``) goes over HTTP as before.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import secrets
import tempfile
import threading
from multiprocessing.connection import Client, Connection, Listener
from pathlib import Path
from typing import Any

from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.handlers import BUILTIN_HANDLERS

from nudge.tools.local.moto_direct import ResponseBody, answer, request_bytes


class MotoRelay:
    """The stack's end: answers workers' requests with moto's backends in this process."""

    def __init__(self, lock: threading.Lock) -> None:
        self._lock = lock
        self._dir = tempfile.mkdtemp(prefix="nudge-moto-relay-")
        self.address = str(Path(self._dir) / "moto.sock")
        self.authkey = secrets.token_bytes(16)
        self._listener = Listener(self.address, family="AF_UNIX", authkey=self.authkey)
        self._closed = False
        self._connections: list[Connection] = []
        self._thread = threading.Thread(target=self._accept, name="moto-relay", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                connection = self._listener.accept()
            except OSError:
                return  # closed
            except Exception:  # noqa: S112 - a client that failed the handshake: wait for the next
                continue
            self._connections.append(connection)
            serve = threading.Thread(target=self._serve, args=(connection,), name="moto-relay-i", daemon=True)
            serve.start()

    def _serve(self, connection: Connection) -> None:
        with connection:
            while True:
                try:
                    method, url, headers, body = pickle.loads(connection.recv_bytes())  # noqa: S301 - our own workers, authenticated
                except (EOFError, OSError):
                    return
                try:
                    result: Any = answer(method, url, headers, body, self._lock)
                except Exception as exc:  # moto itself failed: boto3 sees a 500, as over HTTP
                    result = (500, {"Content-Type": "text/plain"}, f"moto relay: {exc!r}".encode())
                try:
                    connection.send_bytes(pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL))
                except OSError:
                    return

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        for connection in self._connections:
            connection.close()
        self._thread.join(timeout=5)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.address)
        os.rmdir(self._dir)


class _Relayed:
    """The worker's before-send hook: a request for `endpoint` goes down the relay."""

    def __init__(self, endpoint: str, address: str, authkey: bytes) -> None:
        self._endpoint = endpoint.rstrip("/")
        self._address = address
        self._authkey = authkey
        self._local = threading.local()

    def _connection(self) -> Connection:
        connection: Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = Client(self._address, family="AF_UNIX", authkey=self._authkey)
            self._local.connection = connection
        return connection

    def __call__(self, request: AWSPreparedRequest, **_: Any) -> AWSResponse | None:
        url = str(request.url)
        if not (url.startswith(self._endpoint + "/") or url == self._endpoint):
            return None
        message = (str(request.method), url, dict(request.headers), request_bytes(request.body))
        connection = self._connection()
        try:
            connection.send_bytes(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))
            result = pickle.loads(connection.recv_bytes())  # noqa: S301 - from the stack, authenticated
        except (EOFError, OSError):
            # The stack is going away; botocore retries or fails as it would on a dropped connection.
            self._local.connection = None
            raise
        if result is None:
            return None
        status, headers, raw = result
        return AWSResponse(url, status, headers, ResponseBody(raw))


def relay_to(endpoint: str, address: str, authkey: bytes) -> None:
    """In a worker, before it makes any boto3 client: calls to `endpoint` go down the relay."""
    BUILTIN_HANDLERS.append(("before-send", _Relayed(endpoint, address, authkey)))
