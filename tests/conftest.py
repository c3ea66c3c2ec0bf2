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
from pathlib import Path

import pytest

from nudge import clock

E2E = Path(__file__).parent / "e2e"


@pytest.fixture(autouse=True)
def _clock_put_back() -> Iterator[None]:
    """Every test ends on the clock it started on, whatever it did to nudge.clock (a clock installed
    and never taken out, a handler that failed mid-way), so no test's clock reaches the next one."""
    with clock.installed(clock.current()):
        yield


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """End-to-end tests last, and of those the ones that move the local stack's clock, each group in
    whatever order it came (pytest-randomly's, in `make unit`; the sort is stable). The local stack
    the e2e tests share runs moto in this process, and moto's backends are process-wide: a mock_aws
    test (tests/integration) run while it is up would wipe its tables, keys and queues. Its clock
    only moves forward: a test that moves it (marked moves_clock) would move it for every test after
    it, and one that sends the wall clock's time (an SDK's) would see its events dated weeks ago."""
    items.sort(
        key=lambda item: (
            item.path.is_relative_to(E2E),
            # A module with its own stack (own_stack) runs before the shared one starts: one local
            # stack per process at a time (its environment and moto's backends are process-wide).
            item.get_closest_marker("own_stack") is None,
            item.get_closest_marker("moves_clock") is not None,
        )
    )


@pytest.fixture
def use_clock() -> Iterator[Callable[[clock.Source], None]]:
    """Make nudge.clock answer from a source for the rest of this test; the previous clock comes back
    after it, so a test never leaves its clock to the next."""
    with contextlib.ExitStack() as stack:
        yield lambda source: stack.enter_context(clock.installed(source))
