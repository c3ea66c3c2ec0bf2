"""Set a fake AWS environment before anything imports boto3 or Powertools (they make clients at import)."""

import os

os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ["AWS_ACCESS_KEY_ID"] = "testing"
os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"
os.environ.pop("AWS_PROFILE", None)
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "1")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "Nudge")
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "nudge-tests")

import contextlib
from collections.abc import Callable, Iterator

import pytest

from nudge import clock


@pytest.fixture(autouse=True)
def _clock_put_back() -> Iterator[None]:
    """Every test ends on the clock it started on, whatever it did to nudge.clock (a clock installed
    and never taken out, a handler that failed mid-way), so no test's clock reaches the next one."""
    with clock.installed(clock.current()):
        yield


@pytest.fixture
def use_clock() -> Iterator[Callable[[clock.Source], None]]:
    """Make nudge.clock answer from a source for the rest of this test; the previous clock comes back
    after it, so a test never leaves its clock to the next."""
    with contextlib.ExitStack() as stack:
        yield lambda source: stack.enter_context(clock.installed(source))
