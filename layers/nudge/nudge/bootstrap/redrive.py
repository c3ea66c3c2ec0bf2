"""`nudge rollups redrive`: the rollup function's ledger on a named usage table, with its failure
queue and the stream to read a failed batch back from (a module apart from bootstrap.rollups, so
the function's cold start imports none of it)."""

from __future__ import annotations

from dataclasses import dataclass

import boto3

from nudge.adapters.dynamo.rollups import DynamoRollupLedger
from nudge.adapters.dynamo.stream_range import StreamRangeReader
from nudge.adapters.sqs import SqsQueueReader
from nudge.bootstrap import configured
from nudge.bootstrap.stacks import stack_outputs

# template.yaml's outputs naming what a redrive reads and writes.
TABLE_OUTPUT, FAILURE_QUEUE_OUTPUT = "UsageTableName", "RollupFailureQueueUrl"


@dataclass(frozen=True)
class RedriveParts:
    ledger: DynamoRollupLedger
    failures: SqsQueueReader
    stream: StreamRangeReader

    @property
    def table(self) -> str:
        """The usage table the ledger writes: the one whose stream a batch must come from."""
        return self.ledger.table


def wire_redrive(
    *,
    stack: str | None = None,
    table: str | None = None,
    queue: str | None = None,
    endpoint_url: str | None = None,
) -> RedriveParts:
    """The deployed stack's usage table and RollupFailureQueue (by its outputs), or the ones named;
    `endpoint_url` for another AWS (the local stack's moto server). The rollup shards come from
    NUDGE_ROLLUP_SHARDS, as the deployed function's do."""
    if stack is not None:
        outputs = stack_outputs(
            stack,
            (TABLE_OUTPUT, FAILURE_QUEUE_OUTPUT),
            boto3.client("cloudformation", endpoint_url=endpoint_url),
        )
        table, queue = table or outputs[TABLE_OUTPUT], queue or outputs[FAILURE_QUEUE_OUTPUT]
    if table is None or queue is None:
        raise ValueError("name the stack, or both the usage table and the rollup failure queue")
    return RedriveParts(
        ledger=DynamoRollupLedger(
            boto3.client("dynamodb", endpoint_url=endpoint_url), table, configured().rollup_shards
        ),
        failures=SqsQueueReader(boto3.client("sqs", endpoint_url=endpoint_url), queue),
        stream=StreamRangeReader(boto3.client("dynamodbstreams", endpoint_url=endpoint_url)),
    )
