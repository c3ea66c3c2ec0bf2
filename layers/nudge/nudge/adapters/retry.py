"""One AWS call with full-jitter exponential backoff on throttling, and botocore errors mapped
to the domain errors in nudge.model.errors.

Only throttling is retried here: the call was refused before anything was sent, so trying
again cannot duplicate a message. Anything else is decided at once (see errors.py).
botocore's own retry mode may already have retried a throttled call a few times before this
sees it; the two stack, so keep `attempts` small.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

from nudge.model.errors import SendFailed, SendRejected, SendThrottled
from nudge.observability import logger

T = TypeVar("T")

THROTTLING_CODES = frozenset(
    {
        "TooManyRequestsException",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "LimitExceededException",
        "RequestLimitExceeded",
    }
)
# Refusals seen from SES v2, SNS and SQS that no retry will fix. Listed for readers: any other
# 4xx is treated the same way. SendingPausedException is here on purpose: the account or
# configuration set is paused by an operator, and hammering it changes nothing.
PERMANENT_CODES = frozenset(
    {
        "MessageRejected",
        "InvalidParameter",
        "InvalidParameterValue",
        "NotFoundException",
        "NotFound",
        "EndpointDisabled",
        "AccountSuspendedException",
        "SendingPausedException",
        "MailFromDomainNotVerifiedException",
        "BadRequestException",
        "AuthorizationError",
        "AccessDenied",
        "AccessDeniedException",
    }
)

DEFAULT_ATTEMPTS = 4
DEFAULT_BASE_DELAY = 0.1
DEFAULT_MAX_DELAY = 2.0


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", "")) or "Unknown"


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def backoff_delay(attempt: int, base_delay: float, max_delay: float, rng: Callable[[], float]) -> float:
    """Full jitter: uniform in [0, min(max_delay, base_delay * 2**attempt)), attempt from 0."""
    return rng() * min(max_delay, base_delay * (1 << attempt))


def call_with_backoff(
    fn: Callable[[], T],
    *,
    attempts: int = DEFAULT_ATTEMPTS,
    base_delay: float = DEFAULT_BASE_DELAY,
    max_delay: float = DEFAULT_MAX_DELAY,
    sleep: Callable[[float], None] = time.sleep,
    rng: Callable[[], float] = random.random,
) -> T:
    """Call `fn()` up to `attempts` times while AWS throttles it; return its result.

    Raises SendThrottled when the last attempt is throttled too, SendRejected on any other
    client error (4xx), SendFailed when the outcome is unknown (AWS 5xx, network errors).
    """
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    for attempt in range(attempts):
        try:
            return fn()
        except ClientError as exc:
            code = error_code(exc)
            if code in THROTTLING_CODES:
                if attempt + 1 == attempts:
                    raise SendThrottled(f"{code} after {attempts} attempts") from exc
                delay = backoff_delay(attempt, base_delay, max_delay, rng)
                logger.debug("throttled, backing off", extra={"code": code, "delay": delay})
                sleep(delay)
                continue
            if code not in PERMANENT_CODES and _status(exc) >= 500:
                raise SendFailed(f"{code}: AWS failed the call; outcome unknown") from exc
            raise SendRejected(code, str(exc.response.get("Error", {}).get("Message", ""))) from exc
        except ParamValidationError as exc:
            # Refused by botocore before any request left: a bug or bad input, never sent.
            raise SendRejected("ParamValidation", str(exc)) from exc
        except BotoCoreError as exc:
            raise SendFailed(f"{type(exc).__name__}: outcome unknown") from exc
    raise AssertionError("unreachable")  # pragma: no cover


@dataclass(frozen=True)
class Backoff:
    """call_with_backoff's settings, held by an adapter (tests give it a sleep that records)."""

    attempts: int = DEFAULT_ATTEMPTS
    base_delay: float = DEFAULT_BASE_DELAY
    max_delay: float = DEFAULT_MAX_DELAY
    sleep: Callable[[float], None] = time.sleep
    rng: Callable[[], float] = random.random

    def call(self, fn: Callable[[], T]) -> T:
        return call_with_backoff(
            fn,
            attempts=self.attempts,
            base_delay=self.base_delay,
            max_delay=self.max_delay,
            sleep=self.sleep,
            rng=self.rng,
        )


DEFAULT_BACKOFF = Backoff()
