"""RollupFunction's batching window (template.yaml) and what follows it: the benchmarks' quiet
stream gathers as many requests a batch as the window lets Lambda wait for, and the rollup's
iterator-age alarm stays clear of the lag the window adds by design."""

from __future__ import annotations

from pathlib import Path

from bench.rollup_stream import FUNCTION, QUIET_INTERVAL, batching_window, quiet_requests_per_batch
from nudge.model.limits import ROLLUP_SETTLE_SECONDS
from nudge.tools.local.template import load_template

TEMPLATE = load_template(Path("template.yaml"))


def test_the_quiet_stream_the_benchmarks_price_follows_the_template_window() -> None:
    (source,) = [
        e["Properties"]
        for e in TEMPLATE["Resources"][FUNCTION]["Properties"]["Events"].values()
        if e["Type"] == "DynamoDB"
    ]
    window = source["MaximumBatchingWindowInSeconds"]
    assert batching_window() == window
    assert quiet_requests_per_batch() == max(1, int(window // QUIET_INTERVAL)) > 1
    # A request less often than the window: each batch holds one, whatever the window.
    assert quiet_requests_per_batch(interval=window + 1) == 1


def test_account_figures_are_read_after_a_week_close_once_the_window_has_passed() -> None:
    # conditions.facts re-checks an account's figures this long after a week closes: the rollup
    # function may hold the week's last deltas for its whole window (plus polling) before applying them.
    assert 2 * batching_window() <= ROLLUP_SETTLE_SECONDS


def test_the_rollup_lag_alarm_does_not_fire_on_the_window_alone() -> None:
    alarm = TEMPLATE["Resources"]["RollupIteratorAgeAlarm"]["Properties"]
    # Records wait up to the window (plus polling) before their batch is handed over.
    assert alarm["Threshold"] >= 2 * batching_window() * 1000
