"""The webhook poster against a real HTTP receiver on localhost: the receiver verifies each post
with the Standard Webhooks library (PyPI `standardwebhooks`), never with Nudge's own code."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import urllib3
from standardwebhooks import Webhook

from nudge.adapters.webhooks import HttpDestinations
from nudge.backoff import Backoff
from nudge.domain.webhooks import message
from nudge.model.errors import ReceiverUnavailable, SendFailed, SendRejected

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
NOW = datetime(2025, 3, 4, 17, 0, tzinfo=UTC)


class Receiver:
    """A webhook receiver: answers the statuses in `answers` in turn (then 200), verifying every
    post it accepts with the official library (unless `verify` is off) and recording it."""

    def __init__(self, secret: str = SECRET, port: int = 0, *, verify: bool = True) -> None:
        self.answers: list[int] = []
        self.verified: list[Any] = []
        self.bodies: list[Any] = []  # every accepted body, as JSON (a Slack stand-in: verify=False)
        self.headers: list[dict[str, str]] = []
        self.attempts = 0
        self.webhook = Webhook(secret)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                receiver.attempts += 1
                receiver.headers.append(dict(self.headers))
                status = receiver.answers.pop(0) if receiver.answers else 200
                if status == 200:
                    receiver.bodies.append(json.loads(body))
                    if verify:
                        receiver.verified.append(receiver.webhook.verify(body, dict(self.headers)))
                if status == 302:
                    self.send_response(302)
                    self.send_header("location", "https://elsewhere.example/")
                else:
                    self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


def poster(sleeps: list[float], secret: str = SECRET) -> HttpDestinations:
    return HttpDestinations(
        lambda _destination: secret,
        allow_local_http=True,
        backoff=Backoff(attempts=3, base_delay=0.5, max_delay=4.0, sleep=sleeps.append, rng=lambda: 1.0),
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_post_verifies_with_the_standard_webhooks_library(receiver: Receiver) -> None:
    # When a message is posted
    posted = message("dec-1", "rule.fired", {"rule": "rescue_dormant", "user": {"id": "u1"}}, NOW)
    assert poster([]).post_signed("crm", receiver.url, posted) == "dec-1"
    # Then the receiver's library verified it: the id, the type and the data arrive as sent
    [body] = receiver.verified
    assert body["type"] == "rule.fired"
    assert body["data"]["user"] == {"id": "u1"}
    assert receiver.headers[0]["webhook-id"] == "dec-1"


def test_a_failing_receiver_is_tried_again_with_backoff_under_the_same_id(receiver: Receiver) -> None:
    # Given a receiver that fails twice (a 503, then a 500) before it accepts
    receiver.answers = [503, 500]
    sleeps: list[float] = []
    # When posted
    poster(sleeps).post_signed("crm", receiver.url, message("dec-2", "rule.fired", {}, NOW))
    # Then three attempts, the one backoff's growing delays between them, the same webhook-id each time
    assert receiver.attempts == 3
    assert sleeps == [0.5, 1.0]
    assert {h["webhook-id"] for h in receiver.headers} == {"dec-2"}
    assert len(receiver.verified) == 1


def test_a_receiver_down_raises_receiver_unavailable_after_every_attempt() -> None:
    sleeps: list[float] = []
    url = f"http://127.0.0.1:{free_port()}/hooks"  # nothing listens
    with pytest.raises(ReceiverUnavailable, match="3 attempts"):
        poster(sleeps).post_signed("crm", url, message("dec-3", "rule.fired", {}, NOW))
    assert len(sleeps) == 2


def test_a_redirect_is_not_followed(receiver: Receiver) -> None:
    receiver.answers = [302, 302, 302]
    with pytest.raises(ReceiverUnavailable, match="HTTP 302"):
        poster([]).post_signed("crm", receiver.url, message("dec-4", "rule.fired", {}, NOW))
    assert receiver.attempts == 3


def test_plain_http_is_refused_unless_local_http_is_allowed(receiver: Receiver) -> None:
    deployed = HttpDestinations(lambda _d: SECRET)
    with pytest.raises(SendRejected, match="https"):
        deployed.post_signed("crm", receiver.url, message("dec-5", "rule.fired", {}, NOW))
    assert receiver.attempts == 0


def test_a_bad_secret_is_kept_for_a_retry_not_dropped(receiver: Receiver) -> None:
    with pytest.raises(ReceiverUnavailable, match="whsec_"):
        poster([], secret="whsec_not base64!").post_signed(
            "crm", receiver.url, message("dec-6", "rule.fired", {}, NOW)
        )
    assert receiver.attempts == 0


def test_a_slack_url_that_is_not_https_is_kept_for_a_retry_not_posted(receiver: Receiver) -> None:
    deployed = HttpDestinations(lambda _d: receiver.url)
    with pytest.raises(ReceiverUnavailable, match="https"):
        deployed.post_slack("cs_slack", {"text": "hello"})
    assert receiver.attempts == 0


def test_slack_that_never_answers_is_an_unknown_outcome_not_retried() -> None:
    # A Slack post that may have arrived is never retried: Slack dedupes nothing
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)  # accepts the connection, never answers
    url = f"https://127.0.0.1:{listener.getsockname()[1]}/services/T/B/x"
    sleeps: list[float] = []
    slack = HttpDestinations(
        lambda _d: url,
        backoff=Backoff(attempts=3, sleep=sleeps.append),
        timeout=urllib3.Timeout(connect=1.0, read=0.5),
    )
    try:
        with pytest.raises(SendFailed, match="outcome unknown"):
            slack.post_slack("cs_slack", {"text": "hello"})
    finally:
        listener.close()
    assert sleeps == []
