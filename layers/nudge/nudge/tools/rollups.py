"""`nudge rollups redrive`: the rollup function's failed stream batches applied again, once.

RollupFunction's event source retries a failing batch for 6 hours, then sends where it was (shard,
first and last sequence numbers, size) to RollupFailureQueue. Once the cause is fixed, this reads
each such message, reads its range back from the usage table's stream (which keeps records 24
hours: 18 are left when the batch gives up), and hands the records to the rollup function's own
handler as one batch: cut into the same runs as the failed batch, so the runs an earlier try
committed are found by their markers and applied nothing more (docs/ARCHITECTURE.md, "Account
rollups off the user's write"). A message is
deleted once its batch is applied; one that cannot be (the stream no longer holds the range, the
range holds other records than the batch had, the table refused) is left on the queue, and the
command exits 1 naming why.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

from botocore.exceptions import BotoCoreError, ClientError

from nudge.adapters.dynamo.stream_range import (
    FailedBatch,
    NotAFailedBatch,
    RangeNotReadable,
    failed_batch,
    lambda_record,
)
from nudge.adapters.sqs import Received
from nudge.bootstrap.redrive import RedriveParts, wire_redrive
from nudge.bootstrap.stacks import StackNotReadable
from nudge.entrypoints.rollups import RollupStreamHandler, delta_records
from nudge.model.errors import StateConflict, StoreUnavailable
from nudge.observability import metrics


class NotTheBatch(Exception):
    """The range read back holds another number of delta records than the failed batch had."""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    rollups = subparsers.add_parser(
        "rollups", help="Account rollups: redrive the rollup function's failed batches."
    )
    sub = rollups.add_subparsers(dest="rollups_command", metavar="{redrive}", required=True)
    redrive = sub.add_parser(
        "redrive",
        help="Apply the batches on RollupFailureQueue again, each delta once.",
        description=(
            "Read RollupFailureQueue, read each failed batch's range back from the usage table's "
            "stream (it keeps records 24 hours: redrive within 18 hours of the alarm) and apply it "
            "through the rollup function's handler as one batch, so what an earlier try applied is "
            "not applied again. Deleted from the queue once applied; left there, with the reason printed and "
            "exit status 1, when it cannot be."
        ),
    )
    where = redrive.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--stack", metavar="NAME", help="the deployed stack: its outputs name the table and queue"
    )
    where.add_argument("--queue", metavar="URL", help="RollupFailureQueue's URL (with --table)")
    redrive.add_argument("--table", metavar="NAME", help="the usage table (with --queue)")
    redrive.add_argument(
        "--dry-run", action="store_true", help="read and check each batch, apply nothing, delete nothing"
    )
    redrive.add_argument(
        "--endpoint-url", metavar="URL", help="another AWS endpoint, e.g. the local stack's moto server"
    )
    redrive.set_defaults(run=run_redrive)


def run_redrive(args: argparse.Namespace) -> int:
    if args.queue is not None and args.table is None:
        print(
            "nudge rollups redrive: --queue needs --table (the usage table the batches were read from)",
            file=sys.stderr,
        )
        return 2
    try:
        parts = wire_redrive(
            stack=args.stack, table=args.table, queue=args.queue, endpoint_url=args.endpoint_url
        )
    except StackNotReadable as exc:
        print(f"nudge rollups redrive: {exc}", file=sys.stderr)
        return 2
    return redrive(parts, RollupStreamHandler(parts.ledger), dry_run=args.dry_run)


def redrive(
    parts: RedriveParts, handler: RollupStreamHandler, *, dry_run: bool = False, out: TextIO | None = None
) -> int:
    """Every message on the queue redriven or left with its reason; 1 if any cannot be redriven
    (with --dry-run: would not be)."""
    out = out if out is not None else sys.stdout
    kept: list[Received] = []  # released at the end: visible again for the next run, not in 5 minutes
    seen: set[str] = set()  # a long run may be handed a kept message again once its hiding times out
    redriven = failed = 0
    while messages := [m for m in parts.failures.receive() if m.message_id not in seen]:
        for message in messages:
            seen.add(message.message_id)
            try:
                batch = failed_batch(message.body)
                event = _event(parts, batch)
                if dry_run:
                    print(f"batch {batch}: would be applied ({len(event['Records'])} records read)", file=out)
                    kept.append(message)
                    continue
                outcome = handler.apply(event)
            except (NotAFailedBatch, RangeNotReadable, NotTheBatch, StoreUnavailable, StateConflict) as exc:
                print(f"left on the queue: {exc}", file=out)
                kept.append(message)
                failed += 1
                continue
            except (ClientError, BotoCoreError) as exc:
                print(f"left on the queue: the usage table refused the batch's write: {exc}", file=out)
                kept.append(message)
                failed += 1
                continue
            finally:
                # The handler's metrics are the Lambda's: here they would only pile up and print.
                metrics.clear_metrics()
            parts.failures.delete(message)
            redriven += 1
            print(
                f"batch {batch}: {outcome.applied} deltas applied, {outcome.replayed} found applied by an"
                f" earlier try, in {outcome.transactions} transactions",
                file=out,
            )
    for message in kept:
        parts.failures.release(message)
    print(f"{redriven} batches redriven, {failed} left on the queue", file=out)
    return 1 if failed else 0


def _event(parts: RedriveParts, batch: FailedBatch) -> dict[str, Any]:
    """The range as the Lambda event that failed, checked to be of this table's stream and to hold
    as many records as the failed batch did."""
    if f":table/{parts.table}/stream/" not in batch.stream_arn:
        raise NotTheBatch(
            f"batch {batch}: of the stream {batch.stream_arn}, not the usage table {parts.table}'s: redrive"
            " it with that table's name (or the stack's)"
        )
    records = [lambda_record(raw, batch.stream_arn) for raw in parts.stream.read(batch)]
    event: dict[str, Any] = {"Records": records}
    carried = len(delta_records(event))
    # The failed batch held the records the event source's filter passed; its size is checked
    # against that count and, should Lambda count a batch before its filter, against the range's.
    if batch.size not in (carried, len(records)):
        raise NotTheBatch(
            f"batch {batch}: the stream holds {carried} records with a rollup delta in that range, the"
            f" failed batch had {batch.size}: applied, it would be cut into other runs than the failed"
            " batch and could count a delta twice (is this the usage table's stream?)"
        )
    return event
