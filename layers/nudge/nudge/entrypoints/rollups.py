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
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import (
    DynamoDBStreamEvent,
    StreamRecord,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from nudge import clock
from nudge.adapters.dynamo.stream import UndecodableRecord, has_rollup_delta, rollup_from_stream
from nudge.bootstrap.rollups import wire_rollups
from nudge.domain.rollups import StreamDelta
from nudge.observability import logger, metrics
from nudge.ports import RollupLedger
from nudge.services.rollups import RollupOutcome, apply_rollups


def delta_records(event: dict[str, Any]) -> list[tuple[str, StreamRecord]]:
    """(eventID, stream record) of the records of a stream event that carry a rollup delta, in
    order: those the event source's FilterCriteria passes (template.yaml), whatever else it holds."""
    found: list[tuple[str, StreamRecord]] = []
    for record in DynamoDBStreamEvent(event).records:
        stream = record.dynamodb  # a new object per access: its images are deserialized once, here
        if (
            stream is not None
            and record.raw_event.get("eventName") in ("INSERT", "MODIFY")
            and has_rollup_delta(stream.keys, stream.new_image)
        ):
            found.append((record.event_id or "", stream))
    return found


def stream_deltas(event: dict[str, Any]) -> list[StreamDelta]:
    """The rollup deltas of a stream event's records, in order (records without one left out)."""
    found: list[StreamDelta] = []
    for event_id, stream in delta_records(event):
        try:
            delta = rollup_from_stream(stream.keys, stream.new_image)
        except UndecodableRecord:
            logger.exception("rollup delta skipped", extra={"sequence_number": stream.sequence_number})
            metrics.add_metric(name="RollupUndecodable", unit=MetricUnit.Count, value=1)
            continue
        if delta is not None and stream.sequence_number:
            found.append(StreamDelta(stream.sequence_number, delta, event_id))
    return found


class RollupStreamHandler:
    def __init__(self, ledger: RollupLedger | None = None) -> None:
        self.ledger: RollupLedger = ledger if ledger is not None else wire_rollups()

    def handle(self, event: dict[str, Any], context: LambdaContext | None = None) -> dict[str, Any]:
        """No failed record once every delta of the batch is applied; any error fails the batch
        (retried whole). The event source reads no batchItemFailures: the answer only says so."""
        self.apply(event)
        return {"batchItemFailures": []}

    def apply(self, event: dict[str, Any]) -> RollupOutcome:
        """Every delta of the event's records applied once (the Lambda's batch, or a redrive's)."""
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
        return outcome
