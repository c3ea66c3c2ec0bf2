"""The latency bench's arithmetic: percentiles, and what template.yaml's event sources imply on AWS."""

from __future__ import annotations

import pytest

from bench.latency_report import (
    DISPATCH,
    EMAIL,
    EVALUATE,
    POLLING,
    ROOT,
    aws_implied,
    hops,
    percentile,
    window_wait,
)
from nudge.tools.local.template import load_template


def test_percentiles_are_nearest_rank_and_ordered() -> None:
    values = [float(n) for n in range(1, 101)]
    assert [percentile(values, p) for p in (50, 95, 99, 100)] == [50.0, 95.0, 99.0, 100.0]
    assert percentile([3.0], 99) == 3.0
    assert percentile([], 50) == 0.0


def test_the_hops_are_the_template_event_sources() -> None:
    # Given the template's own event sources
    resources = load_template(ROOT / "template.yaml")["Resources"]
    stream = resources[EVALUATE]["Properties"]["Events"]["UsageChanges"]["Properties"]
    decisions = resources[DISPATCH]["Properties"]["Events"]["Decisions"]["Properties"]

    # Then the bench reads their batch sizes and windows, and no window where none is set
    by_function = {hop.function: hop for hop in hops()}
    assert by_function[EVALUATE].window == stream["MaximumBatchingWindowInSeconds"]
    assert by_function[EVALUATE].batch_size == stream["BatchSize"]
    assert by_function[DISPATCH].window == decisions["MaximumBatchingWindowInSeconds"]
    assert by_function[EMAIL].window == 0
    assert by_function[EVALUATE].poll == POLLING["DynamoDB"]


def test_a_window_runs_out_at_low_rates_and_a_full_batch_goes_sooner_at_high_ones() -> None:
    evaluate = next(hop for hop in hops() if hop.function == EVALUATE)
    assert window_wait(evaluate, 0.001) == evaluate.window
    assert window_wait(evaluate, 10_000) == pytest.approx(evaluate.batch_size / 10_000)

    # The send waits for everything the decision waits for, and more
    quiet_decision, quiet_send = aws_implied(hops(), 0.001)
    busy_decision, busy_send = aws_implied(hops(), 2_000)
    assert quiet_decision == pytest.approx(evaluate.poll + evaluate.window)
    assert quiet_send > quiet_decision
    assert busy_decision < quiet_decision
    assert busy_send < quiet_send
