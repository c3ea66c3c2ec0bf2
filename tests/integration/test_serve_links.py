"""`nudge serve --port P`: links in messages (unsubscribe) point at the port really served, not 8080."""

from __future__ import annotations

import os
import socket
from typing import Any

import pytest
import requests

from nudge.tools.cli import main
from nudge.tools.local import commands
from nudge.tools.local.http import LocalApiServer
from nudge.tools.local.stack import LocalStack


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_nudge_serve_on_another_port_links_to_that_port(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a free port that is not the default
    port = free_port()
    assert port != 8080
    seen: dict[str, Any] = {}

    def serve_briefly(server: LocalApiServer) -> None:
        # What the functions are told to link to, and what answers there, then Ctrl-C
        seen["link"] = os.environ["NUDGE_UNSUBSCRIBE_URL"]
        with server:
            seen["answer"] = requests.get(seen["link"], timeout=30)
        raise KeyboardInterrupt

    monkeypatch.setattr(LocalApiServer, "serve_forever", serve_briefly)
    monkeypatch.setattr(commands.signal, "signal", lambda *_: None)  # leave pytest's SIGTERM alone

    # When `nudge serve --port P` runs
    assert main(["serve", "--port", str(port), "--containers", "0", "--quiet"]) == 0

    # Then links point at that port, where the API's unsubscribe route answers (a page: no token)
    assert seen["link"] == f"http://127.0.0.1:{port}/v1/unsubscribe"
    assert seen["answer"].status_code == 400
    assert "text/html" in seen["answer"].headers["Content-Type"]


def test_a_server_listening_everywhere_links_to_the_loopback_address() -> None:
    # Given a stack served on every interface, any port
    stack = LocalStack()
    server = LocalApiServer(stack, "0.0.0.0", 0)  # noqa: S104 - bound for the test, closed below
    try:
        # Then its links name the loopback address (RFC 8058 allows plain http there only) and the port
        assert stack.api_url == f"http://127.0.0.1:{server.port}"
    finally:
        server.stop()
