"""The latency bench's code at a tiny rate on its own local stack (the bench rule set: one email per
event): every event posted is accepted, decided and sent once, the ledger agrees, and each stage's
percentiles are ordered. No timing threshold: `python -m bench --only latency` reports the figures."""

from __future__ import annotations

from pathlib import Path

import pytest
from moto.moto_api._internal.models import moto_api_backend

from bench.latency import measure
from bench.latency_report import hops, percentile, report
from tests.e2e.conftest import SHARED

pytestmark = [pytest.mark.e2e, pytest.mark.own_stack]


def test_every_event_at_a_tiny_rate_is_decided_and_sent_and_its_percentiles_are_ordered(
    tmp_path: Path,
) -> None:
    # Given the bench's stack in this process, driven every 0.2 s
    assert not SHARED, "the shared stack is up: own_stack modules run before it (tests/conftest.py)"
    try:
        # When 20 events/s are offered for a second, in bodies of 5, the functions in this process
        # (after such a stack, boto3's default session once carried the in-process hook twice and
        # the shared stack's DLQ tests saw each dead letter twice: test_moto_direct.py)
        (run,) = measure([20.0], 1.0, tmp_path, batch=5, containers=0, senders=2, poll_seconds=0.2)
    finally:
        # moto's backends are process-wide: the shared stack, next, starts from nothing
        moto_api_backend.reset()

    # Then every event was accepted, decided once and sent once, and the ledger says so too
    assert run.events == 20
    assert run.errors == 0
    assert len(set(run.users)) == 20
    assert run.drained
    assert run.lost == 0
    assert run.ledger_decisions == run.ledger_sent == 20
    assert all(run.stamps.decided[u] <= run.stamps.dispatched[u] <= run.stamps.sent[u] for u in run.users)

    # And each stage holds one latency per event, its percentiles in order, later stages later
    medians = []
    for stage in ("ack", "decided", "sent"):
        values = run.latencies(stage)
        assert len(values) == 20
        p50, p95, p99 = (percentile(values, p) for p in (50, 95, 99))
        assert 0 < p50 <= p95 <= p99 <= max(values)
        medians.append(p50)
    assert medians[1] <= medians[2]

    # And the report accounts for all of them
    assert "all 20" in "\n".join(report([run], hops()))
