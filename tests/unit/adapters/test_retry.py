"""Backoff on throttling, and botocore errors turned into send errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ParamValidationError, ReadTimeoutError

from nudge.adapters.retry import THROTTLING_CODES, call_with_backoff
from nudge.backoff import Backoff
from nudge.model.errors import SendError, SendFailed, SendRejected, SendThrottled


def client_error(code: str, status: int = 400, message: str = "nope") -> ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, "SendEmail")


class Script:
    """A callable that raises the given errors in turn, then returns "ok"; counts its calls."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def run(fn: Callable[[], Any], sleeps: Sleeps, *, rng: float = 1.0, **kwargs: Any) -> Any:
    settings: dict[str, Any] = {"attempts": 4, "base_delay": 0.1, "max_delay": 10.0}
    settings.update(kwargs)
    return call_with_backoff(fn, Backoff(sleep=sleeps, rng=lambda: rng, **settings))


def test_a_call_that_succeeds_is_not_retried() -> None:
    # Given a call that works
    fn, sleeps = Script(), Sleeps()

    # When it is called with backoff
    result = run(fn, sleeps)

    # Then it ran once and nobody slept
    assert (result, fn.calls, sleeps.delays) == ("ok", 1, [])


def test_a_throttled_call_backs_off_exponentially_then_succeeds() -> None:
    # Given a call throttled twice
    fn, sleeps = Script(client_error("TooManyRequestsException", 429), client_error("Throttling")), Sleeps()

    # When it is called with backoff (jitter pinned to its maximum)
    result = run(fn, sleeps)

    # Then it succeeded on the third call after sleeping base, then twice base
    assert result == "ok"
    assert fn.calls == 3
    assert sleeps.delays == pytest.approx([0.1, 0.2])


def test_the_delay_is_full_jitter_between_zero_and_the_ceiling() -> None:
    # Given a call throttled three times
    fn, sleeps = Script(*[client_error("ThrottlingException")] * 3), Sleeps()

    # When the random draw is 0.25
    run(fn, sleeps, rng=0.25)

    # Then each delay is a quarter of its exponential ceiling
    assert sleeps.delays == pytest.approx([0.025, 0.05, 0.1])


def test_the_delay_never_exceeds_max_delay() -> None:
    # Given many throttles and a low cap
    fn, sleeps = Script(*[client_error("ThrottlingException")] * 6), Sleeps()

    # When called with up to 7 attempts
    run(fn, sleeps, attempts=7, base_delay=1.0, max_delay=3.0)

    # Then the delays grow, then stay at the cap
    assert sleeps.delays == pytest.approx([1.0, 2.0, 3.0, 3.0, 3.0, 3.0])


def test_it_gives_up_after_the_last_attempt_with_send_throttled() -> None:
    # Given a call throttled every time
    fn, sleeps = Script(*[client_error("TooManyRequestsException", 429)] * 10), Sleeps()

    # When called with 3 attempts
    with pytest.raises(SendThrottled) as caught:
        run(fn, sleeps, attempts=3)

    # Then it tried 3 times, slept between them only, and the error is retryable
    assert fn.calls == 3
    assert len(sleeps.delays) == 2
    assert caught.value.retryable
    assert isinstance(caught.value.__cause__, ClientError)


@pytest.mark.parametrize("code", sorted(THROTTLING_CODES))
def test_every_throttling_code_is_retried(code: str) -> None:
    # Given a call throttled once with this code
    fn, sleeps = Script(client_error(code)), Sleeps()

    # When called, Then the second attempt succeeds
    assert run(fn, sleeps) == "ok"
    assert fn.calls == 2


@pytest.mark.parametrize(
    "code",
    [
        "MessageRejected",
        "InvalidParameter",
        "InvalidParameterValue",
        "NotFoundException",
        "EndpointDisabled",
        "AccountSuspendedException",
        "SendingPausedException",
        "MailFromDomainNotVerifiedException",
        "BadRequestException",
        "SomethingNewButStill4xx",
    ],
)
def test_a_permanent_refusal_is_rejected_at_once(code: str) -> None:
    # Given a call AWS refuses for good
    fn, sleeps = Script(client_error(code)), Sleeps()

    # When called
    with pytest.raises(SendRejected) as caught:
        run(fn, sleeps)

    # Then it ran once, nobody slept, and the code is kept
    assert fn.calls == 1
    assert sleeps.delays == []
    assert caught.value.code == code
    assert not caught.value.retryable


def test_a_rejection_message_does_not_leak_addresses_numbers_or_arns() -> None:
    # Given an AWS message quoting an address, a phone number and an endpoint ARN
    message = (
        "Email address is not verified: ann@example.com; +447700900123 at "
        "arn:aws:sns:us-east-1:123456789012:endpoint/GCM/app/0f9c"
    )
    fn = Script(client_error("MessageRejected", message=message))

    # When the call is rejected
    with pytest.raises(SendRejected) as caught:
        run(fn, Sleeps())

    # Then none of them appear in the error
    text = str(caught.value)
    assert "ann@example.com" not in text
    assert "+447700900123" not in text
    assert "123456789012" not in text
    assert "not verified" in text


def test_an_aws_server_error_is_send_failed_and_not_retried() -> None:
    # Given AWS failing with a 5xx (the request may have been processed)
    fn, sleeps = Script(client_error("InternalFailure", 500)), Sleeps()

    # When called
    with pytest.raises(SendFailed):
        run(fn, sleeps)

    # Then it was not retried here: a retry could send twice
    assert fn.calls == 1
    assert sleeps.delays == []


@pytest.mark.parametrize(
    "error",
    [
        EndpointConnectionError(endpoint_url="https://email.us-east-1.amazonaws.com"),
        ReadTimeoutError(endpoint_url="https://email.us-east-1.amazonaws.com"),
    ],
)
def test_a_network_error_is_send_failed_outcome_unknown(error: Exception) -> None:
    # Given a call that breaks on the network
    fn, sleeps = Script(error), Sleeps()

    # When called, Then it is SendFailed, raised at once
    with pytest.raises(SendFailed, match="outcome unknown"):
        run(fn, sleeps)
    assert fn.calls == 1


def test_bad_parameters_caught_by_botocore_are_rejected() -> None:
    # Given a call botocore refuses before sending
    fn = Script(ParamValidationError(report="Missing required parameter"))

    # When called, Then it is a rejection (nothing was sent, retrying cannot help)
    with pytest.raises(SendRejected) as caught:
        run(fn, Sleeps())
    assert caught.value.code == "ParamValidation"


def test_errors_that_are_not_from_botocore_pass_through() -> None:
    # Given a bug in the call itself
    fn = Script(KeyError("MessageId"))

    # When called, Then the bug is not disguised as a send error
    with pytest.raises(KeyError):
        run(fn, Sleeps())


def test_every_send_error_is_a_send_error() -> None:
    # Given each kind, Then a caller can catch them all with SendError
    for error in (SendThrottled("x"), SendRejected("X"), SendFailed("x")):
        assert isinstance(error, SendError)


def test_at_least_one_attempt_is_required() -> None:
    with pytest.raises(ValueError, match="attempts"):
        run(Script(), Sleeps(), attempts=0)


def test_backoff_settings_apply_to_the_call() -> None:
    # Given settings with 2 attempts and a recording sleep
    sleeps = Sleeps()
    backoff = Backoff(attempts=2, base_delay=0.5, max_delay=1.0, sleep=sleeps, rng=lambda: 1.0)
    fn = Script(*[client_error("Throttling")] * 5)

    # When a call is throttled every time
    with pytest.raises(SendThrottled):
        call_with_backoff(fn, backoff)

    # Then those settings were used
    assert fn.calls == 2
    assert sleeps.delays == [0.5]
