"""One AWS call retried with the one backoff (nudge.backoff) while throttled, and botocore errors
mapped to the domain errors in nudge.model.errors.

Only throttling is retried here: the call was refused before anything was sent, so trying
again cannot duplicate a message. Anything else is decided at once (see errors.py).
botocore's own retry mode may already have retried a throttled call a few times before this
sees it; the two stack, so keep `attempts` small.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

from nudge.backoff import Backoff
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

# Sends: four attempts, 0.1 s growing to at most 2 s between them.
DEFAULT_BACKOFF = Backoff(attempts=4, base_delay=0.1, max_delay=2.0)


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", "")) or "Unknown"


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def call_with_backoff(fn: Callable[[], T], backoff: Backoff = DEFAULT_BACKOFF) -> T:
    """Call `fn()` up to `backoff.attempts` times while AWS throttles it; return its result.

    Raises SendThrottled when the last attempt is throttled too, SendRejected on any other
    client error (4xx), SendFailed when the outcome is unknown (AWS 5xx, network errors).
    """
    for attempt in backoff.tries():
        try:
            return fn()
        except ClientError as exc:
            code = error_code(exc)
            if code in THROTTLING_CODES:
                if attempt + 1 == backoff.attempts:
                    raise SendThrottled(f"{code} after {backoff.attempts} attempts") from exc
                logger.debug("throttled, backing off", extra={"code": code, "attempt": attempt})
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
