"""The one place that creates Powertools' Logger, Tracer and Metrics."""

from aws_lambda_powertools import Logger, Metrics, Tracer

logger = Logger()
tracer = Tracer()
metrics = Metrics(namespace="Nudge")
