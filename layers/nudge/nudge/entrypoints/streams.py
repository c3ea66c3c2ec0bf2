"""The usage table's stream -> the evaluate use case: each changed user's segments, next check and
decisions; an account whose traits changed -> the same for each of its users."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from nudge import clock
from nudge.adapters.dynamo.stream import account_from_stream, user_from_stream
from nudge.adapters.dynamo.usage import CORRELATION_ATTRIBUTE
from nudge.bootstrap.rules import RulesService, wire
from nudge.observability import logger
from nudge.services.account_facts import AccountFactsCache
from nudge.services.evaluate import evaluate_account, evaluate_user


class UsageStreamHandler:
    """Built at cold start (rules, settings, clients): a bad rule file fails there, every problem logged."""

    def __init__(self) -> None:
        self.service: RulesService = wire()
        self.processor = BatchProcessor(event_type=EventType.DynamoDBStreams)

    def handle(self, event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
        # One account cache per batch: users of one account share its traits and rollup reads.
        accounts = AccountFactsCache(self.service.ports.usage, self.service.rules.reads_account_usage)
        try:
            return process_partial_response(
                event=event,
                record_handler=lambda record: self._record(record, accounts),
                processor=self.processor,
                context=context,
            )
        finally:
            self.service.metrics.flush()
            logger.set_correlation_id(None)

    def _record(self, record: DynamoDBRecord, accounts: AccountFactsCache) -> None:
        service = self.service
        stream = record.dynamodb
        # The request that wrote this state (ingest API request id), if any: this record's log
        # lines and the decisions it publishes carry it. Never a previous record's.
        correlation_id = str(stream.new_image.get(CORRELATION_ATTRIBUTE) or "") if stream else ""
        logger.set_correlation_id(correlation_id or None)
        # FilterCriteria already keeps out everything but users' STATE and accounts' TRAITS
        # items; this guards the local stack's pump and any event source configured without it.
        try:
            if stream is None:
                return
            account = account_from_stream(stream.keys, stream.new_image, stream.old_image)
            if account is not None:
                # Users of this account later in the batch see the new traits too: the cache
                # entry is dropped and read again.
                evaluate_account(
                    account.account_id,
                    service.rules,
                    service.ports,
                    clock.now(),
                    accounts=accounts,
                    limit=service.settings.account_fanout_limit,
                    attempts=service.attempts,
                )
                return
            change = user_from_stream(stream.keys, stream.new_image)
            if change is None:
                return
            evaluate_user(
                change.value,
                service.rules,
                service.ports,
                clock.now(),
                state_version=change.version,
                accounts=accounts,
                attempts=service.attempts,
                correlation_id=correlation_id,
            )
        except Exception:
            # Reported to Lambda as this record's failure (retry, bisect, then the on-failure
            # queue). Exception messages here never carry state or traits, only keys.
            logger.exception(
                "record failed", extra={"sequence_number": stream.sequence_number if stream else None}
            )
            raise
