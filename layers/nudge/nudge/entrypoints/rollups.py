"""The usage table's stream (users' writes that carry a rollup delta) -> the accounts' rollups,
each delta exactly once (nudge.services.rollups).

All or nothing per batch, on purpose: the event source has neither ReportBatchItemFailures nor
BisectBatchOnFunctionError, so a failed batch is retried whole, from the same first record, and
its runs' markers (keyed by that record) find what an earlier try applied. A record whose delta
cannot be read is skipped, logged and counted (`RollupUndecodable`), never retried: it would stop
the shard. Metrics: `RollupRecords` (deltas applied now), `RollupReplayed` (found applied by an
earlier try), `RollupTransactions`, `RollupAccountUpdates`.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBStreamEvent
from aws_lambda_powertools.utilities.typing import LambdaContext

from nudge import clock
from nudge.adapters.dynamo.stream import UndecodableRecord, rollup_from_stream
from nudge.bootstrap.rollups import wire_rollups
from nudge.domain.rollups import StreamDelta
from nudge.observability import logger, metrics
from nudge.ports import RollupLedger
from nudge.services.rollups import RollupOutcome, apply_rollups


def stream_deltas(event: dict[str, Any]) -> list[StreamDelta]:
    """The rollup deltas of a stream event's records, in order (records without one left out)."""
    found: list[StreamDelta] = []
    for record in DynamoDBStreamEvent(event).records:
        stream = record.dynamodb
        if stream is None or record.raw_event.get("eventName") not in ("INSERT", "MODIFY"):
            continue
        try:
            delta = rollup_from_stream(stream.keys, stream.new_image)
        except UndecodableRecord:
            logger.exception("rollup delta skipped", extra={"sequence_number": stream.sequence_number})
            metrics.add_metric(name="RollupUndecodable", unit=MetricUnit.Count, value=1)
            continue
        if delta is not None and stream.sequence_number:
            found.append(StreamDelta(stream.sequence_number, delta, record.event_id or ""))
    return found


class RollupStreamHandler:
    def __init__(self, ledger: RollupLedger | None = None) -> None:
        self.ledger: RollupLedger = ledger if ledger is not None else wire_rollups()

    def handle(self, event: dict[str, Any], context: LambdaContext | None = None) -> dict[str, Any]:
        """No failed record once every delta of the batch is applied; any error fails the batch
        (retried whole). The event source reads no batchItemFailures: the answer only says so."""
        outcome: RollupOutcome = apply_rollups(stream_deltas(event), self.ledger, clock.now())
        for name, value in (
            ("RollupRecords", outcome.applied),
            ("RollupReplayed", outcome.replayed),
            ("RollupTransactions", outcome.transactions),
            ("RollupAccountUpdates", outcome.accounts),
        ):
            metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
        if outcome.replayed:
            logger.info(
                "rollup batch retried", extra={"replayed": outcome.replayed, "applied": outcome.applied}
            )
        return {"batchItemFailures": []}
