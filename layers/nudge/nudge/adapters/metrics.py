"""Evaluation metrics as Powertools EMF: segment entries and exits, decisions, sweep results."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from aws_lambda_powertools.metrics import MetricUnit

from nudge.model.outcomes import SweepResult, UserOutcome
from nudge.observability import MetricCounts

if TYPE_CHECKING:
    from aws_lambda_powertools import Metrics


class PowertoolsEvaluationMetrics:
    """CloudWatch metrics (EMF) through Powertools, summed per invocation and emitted by `flush`.

    Segment entries and exits carry a `segment` dimension, which Powertools' shared metric set
    cannot (its dimensions apply to every metric of the flush): they go out as single metrics,
    one line per segment and kind per invocation rather than one per user."""

    def __init__(self, metrics: Metrics) -> None:

        self.metrics = metrics
        self.transitions = MetricCounts(metrics)
        self.counts: Counter[str] = Counter()

    def outcome(self, outcome: UserOutcome) -> None:
        self.counts["Evaluations"] += 1
        self.counts["DecisionsPublished"] += len(outcome.published)
        self.counts["EvaluationConflicts"] += outcome.conflicts
        if outcome.ignored_facts:
            self.counts["FactsIgnored"] += len(outcome.ignored_facts)
        if not outcome.evaluated:
            self.counts["StaleRecordsSkipped"] += 1
        if outcome.entered:
            self.transitions.add("SegmentEntered", "segment", outcome.entered)
        if outcome.exited:
            self.transitions.add("SegmentExited", "segment", outcome.exited)

    def swept(self, result: SweepResult) -> None:
        self.counts["SweepUsersDue"] += result.due
        self.counts["SweepUsersFailed"] += result.failed
        # 1 when the run got through every bucket with nothing held back: the alarm's signal.
        self.counts["SweepCompleted"] += int(result.complete)

    def flush(self) -> None:

        self.transitions.flush()
        # Always one data point, even for a batch of records that were all ignored: a metric
        # that goes missing is harder to alarm on than a zero.
        self.counts.setdefault("Evaluations", 0)
        for name, count in sorted(self.counts.items()):
            self.metrics.add_metric(name=name, unit=MetricUnit.Count, value=count)
        self.counts.clear()
