"""The one place that creates Powertools' Logger, Tracer and Metrics.

Metrics that carry a dimension of their own (`Decisions` by `outcome`, `Sends` by `channel`, ...)
cannot go through the shared metric set: its dimensions apply to every metric of the flush. They
are summed per invocation in `MetricCounts` and go out as Powertools single metrics, one EMF line
per metric and dimension value per invocation, never one per record.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.metrics.base import SingleMetric

logger = Logger()
# Only botocore is patched for X-Ray: every call Nudge makes to AWS goes through it. Tracer's
# default, the X-Ray SDK's patch_all, tries to import and patch every library it knows (requests,
# sqlite3, mysql, sqlalchemy, httpx, aiobotocore, ...) in every cold start, and Nudge uses none of
# them (webhooks go out through urllib3, which patch_all does not patch either).
TRACED_MODULES = ("botocore",)
tracer = Tracer(patch_modules=TRACED_MODULES)
metrics = Metrics(namespace="Nudge")


@contextmanager
def quiet_logs(level: str = "WARNING") -> Iterator[None]:
    """Only `level` and above for the block: the services log each publish and transition for
    CloudWatch, which a replay of thousands (a backtest, a benchmark) would flood its output with."""
    previous = logger.log_level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(previous)


class MetricCounts:
    """Counts summed over one invocation, emitted by `flush` (call it in the handler's `finally`).

    `add(name, dimension, value)` counts under one dimension (plus Powertools' `service`);
    `add(name)` counts with no dimension at all, not even `service`: one alarm then covers every
    function that emits it (SendOutcomeUnknown).
    """

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.counts: Counter[tuple[str, str, str]] = Counter()

    def add(self, name: str, dimension: str = "", value: str = "", count: int = 1) -> None:
        if count:
            self.counts[(name, dimension, value)] += count

    def flush(self) -> None:
        for (name, dimension, value), count in sorted(self.counts.items()):
            if not dimension:
                _undimensioned(name, count, self.metrics.namespace)
                continue
            with single_metric(
                name=name,
                unit=MetricUnit.Count,
                value=count,
                namespace=self.metrics.namespace,
                default_dimensions=self.metrics.default_dimensions,
            ) as metric:
                metric.add_dimension(name=dimension, value=value)
        self.counts.clear()


def _undimensioned(name: str, count: int, namespace: str | None) -> None:
    # single_metric always adds the `service` dimension; an empty service leaves the dimension
    # set empty, which EMF publishes as the metric with no dimensions.
    metric = SingleMetric(namespace=namespace, service="")
    metric.add_metric(name=name, unit=MetricUnit.Count, value=count)
    print(json.dumps(metric.serialize_metric_set(), separators=(",", ":")))
