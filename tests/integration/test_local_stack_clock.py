"""The local stack leaves nothing of itself in the process: its simulated clock holds inside the handlers
it invokes and nowhere else, and what was built to reach its moto server goes when it stops, so a test
(or anything) sharing the process keeps its own clock and its own AWS, whatever ran before it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import boto3
import pytest
from aws_lambda_powertools.utilities import parameters
from moto import mock_aws

from nudge import clock
from nudge.tools.local.environment import UNSUBSCRIBE_SECRET_PARAM
from nudge.tools.local.simulated_clock import SimulatedClock
from nudge.tools.local.stack import LocalStack

MONTH_AHEAD = datetime.now(UTC).replace(microsecond=0) + timedelta(days=30)


@pytest.mark.parametrize("containers", [0, 1])
def test_handlers_read_the_stack_clock_and_the_process_keeps_its_own(containers: int) -> None:
    # Given a local stack whose clock is a month ahead (in this process, or in a worker)
    with LocalStack(clock=SimulatedClock(MONTH_AHEAD), containers=containers, log_level="WARNING") as stack:
        # When the sweep function runs (it reports the day it swept through)
        summary = stack.invoke_function("SweepFunction", {})
        # Then the handler read the stack's clock: its watermark is a month ahead
        assert datetime.fromisoformat(summary["watermark"]) >= MONTH_AHEAD - timedelta(days=1)
        # ...while this process, stack running, still reads the wall clock
        assert clock.now() < MONTH_AHEAD - timedelta(days=29)
    # ...and after it stopped
    assert clock.now() < MONTH_AHEAD - timedelta(days=29)


def test_after_the_stack_stops_parameters_are_read_from_the_aws_of_whoever_comes_next() -> None:
    # Given a stack whose in-process handlers read a parameter through Powertools (its provider keeps
    # a boto3 client, made while the stack pointed boto3 at its moto server)
    with LocalStack(containers=0, log_level="WARNING"):
        assert parameters.get_parameter(UNSUBSCRIBE_SECRET_PARAM)
    # When a test then reads its own parameter from its own moto
    with mock_aws():
        boto3.client("ssm").put_parameter(Name="/after/the/stack", Value="mine", Type="String")
        # Then it gets it (it was a GetParameterError: the client still called the stopped server)
        assert parameters.get_parameter("/after/the/stack") == "mine"
