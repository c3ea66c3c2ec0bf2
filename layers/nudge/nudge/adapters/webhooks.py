"""Posting to destinations over HTTPS: signed webhooks (Standard Webhooks) and Slack incoming webhooks.

urllib3 (which botocore already brings, in the Lambda runtime too): no redirects followed (a
signed post goes where the rule file says, nowhere else), bounded connect and read timeouts, no
retries of its own: the attempts are the one backoff's (nudge.backoff).

Signed webhooks: every failure (no connection, no answer in time, a status other than 2xx) is
tried again a few times here, then raised as ReceiverUnavailable so the queue tries again later,
and finally keeps the message in its DLQ. Retrying is safe because each attempt carries the same
webhook-id, which receivers dedupe on (the specification asks them to). Each attempt is signed
anew with the wall clock's time: the timestamp says when the request was made, and receivers
refuse one more than a few minutes off their own clock (the local stack's simulated clock would
be days off).

Slack dedupes nothing, so there a request that may have arrived (no answer in time, the
connection dropped after sending) is SendFailed: outcome unknown, never retried. A request that
never connected, or that Slack refused with 429 or 5xx, is retried like a webhook's.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import urllib3
from urllib3.exceptions import ConnectTimeoutError, HTTPError, NewConnectionError

from nudge.backoff import Backoff
from nudge.domain.webhooks import BadWebhookSecret, WebhookMessage, secret_key, signed_headers
from nudge.model.errors import ReceiverUnavailable, SendFailed, SendRejected
from nudge.observability import logger
from nudge.rulebook.destinations import LOCAL_HOSTS

# Three tries 0.5 s to 4 s apart, each at most 3 s to connect and 10 s to answer: under a minute
# in all (the function's timeout is 60 s); the queue spaces out the retries after that.
WEBHOOK_BACKOFF = Backoff(attempts=3, base_delay=0.5, max_delay=4.0)
TIMEOUT = urllib3.Timeout(connect=3.0, read=10.0)
USER_AGENT = "Nudge-Webhooks/1"


class HttpDestinations:
    """`secret(destination)`: the destination's SSM parameter (a `whsec_` secret, or a Slack URL).
    `allow_local_http`: plain http to localhost (the local stack and tests); deployed, https only."""

    def __init__(
        self,
        secret: Callable[[str], str],
        *,
        http: urllib3.PoolManager | None = None,
        allow_local_http: bool = False,
        backoff: Backoff = WEBHOOK_BACKOFF,
        wall_clock: Callable[[], float] = time.time,
        timeout: urllib3.Timeout = TIMEOUT,
    ) -> None:
        self.secret = secret
        self.http = http or urllib3.PoolManager()
        self.allow_local_http = allow_local_http
        self.backoff = backoff
        self.wall_clock = wall_clock
        self.timeout = timeout

    def post_signed(self, destination: str, url: str, message: WebhookMessage) -> str:
        self._check_url(url)
        try:
            key = secret_key(self._secret(destination))
        except BadWebhookSecret as exc:
            # A setting to fix, not a message to drop: retried, then kept in the DLQ for a redrive.
            raise ReceiverUnavailable(f"destination {destination}: {exc}") from exc
        last = ""
        for _ in self.backoff.tries():
            headers = signed_headers(key, message.webhook_id, int(self.wall_clock()), message.body)
            headers["user-agent"] = USER_AGENT
            try:
                status = self._post(url, message.body, headers)
            except HTTPError as exc:
                last = type(exc).__name__
                continue
            if 200 <= status < 300:
                return message.webhook_id
            last = f"HTTP {status}"
        logger.warning("webhook not confirmed", extra={"destination": destination, "error": last})
        raise ReceiverUnavailable(f"destination {destination}: {last} after {self.backoff.attempts} attempts")

    def post_slack(self, destination: str, body: Mapping[str, Any]) -> str:
        url = self._secret(destination)
        if not self._allowed(url):
            raise ReceiverUnavailable(f"destination {destination}: its SSM parameter is not an https URL")
        data = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        headers = {"content-type": "application/json", "user-agent": USER_AGENT}
        last = ""
        for _ in self.backoff.tries():
            try:
                status = self._post(url, data, headers)
            except (NewConnectionError, ConnectTimeoutError) as exc:
                last = type(exc).__name__  # never connected: nothing was posted
                continue
            except HTTPError as exc:
                raise SendFailed(f"slack {destination}: {type(exc).__name__}; outcome unknown") from exc
            if 200 <= status < 300:
                return f"slack:{destination}"
            if status == 429 or status >= 500:
                last = f"HTTP {status}"
                continue
            # 400 invalid_payload, 403 invalid_token, 404 no_service, 410 channel_is_archived: a
            # setting to fix; kept (DLQ) rather than dropped.
            raise ReceiverUnavailable(f"slack {destination}: HTTP {status}")
        raise ReceiverUnavailable(f"slack {destination}: {last} after {self.backoff.attempts} attempts")

    def _secret(self, destination: str) -> str:
        try:
            return self.secret(destination)
        except Exception as exc:  # SSM unreachable or the parameter missing: retried, then DLQ
            raise ReceiverUnavailable(f"destination {destination}: its secret cannot be read") from exc

    def _allowed(self, url: str) -> bool:
        parts = urlsplit(url)
        local = parts.scheme == "http" and self.allow_local_http and parts.hostname in LOCAL_HOSTS
        return parts.scheme == "https" or local

    def _check_url(self, url: str) -> None:
        if not self._allowed(url):
            raise SendRejected("insecure_url", "webhooks go over https only")

    def _post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        response = self.http.request(
            "POST", url, body=body, headers=headers, redirect=False, retries=False, timeout=self.timeout
        )
        return int(response.status)
