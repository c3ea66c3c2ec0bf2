"""The sweep use case: evaluate every user whose time-based re-check is due, from the sparse `due`
index, bucket (UTC day) by bucket, from the watermark through now; then move the watermark."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from nudge.model.errors import StateConflict
from nudge.model.outcomes import SweepResult
from nudge.model.segments import bucket_start
from nudge.observability import logger
from nudge.rulebook.ruleset import RuleSet
from nudge.services.account_facts import AccountFactsCache
from nudge.services.evaluate import RulesPorts, evaluate_user


@dataclass(frozen=True)
class SweepOptions:
    page_size: int = 100
    # Where the very first sweep starts (no watermark yet): the evaluator scheduled no check
    # before it was deployed, and the sweep is deployed with it.
    lookback: timedelta = timedelta(days=7)
    # A user whose evaluation failed is tried again this much later, so one poison user never
    # pins the watermark (and the sweep's reads) to its day.
    retry_after: timedelta = timedelta(hours=1)
    # The watermark stays this far behind the run's start: an evaluator that read the clock just
    # before a day ended may write a check due that day just after the sweep queried it.
    settle: timedelta = timedelta(minutes=5)
    # Stop taking new pages when fewer seconds than this remain (the Lambda timeout).
    margin_seconds: float = 30.0
    attempts: int = 5


def sweep(
    rules: RuleSet,
    ports: RulesPorts,
    now: datetime,
    *,
    options: SweepOptions | None = None,
    time_left: Callable[[], float] | None = None,
    correlation_id: str = "",
) -> SweepResult:
    """Evaluate every user whose re-check is due at `now`, then move the watermark.

    Reads: one index query per bucket (UTC day) and shard since the watermark (usually one day),
    then per page of due users one BatchGetItem of their states and one of their records: they
    grow with the users due, never with the table. time_left() (seconds) lets a Lambda stop
    before its timeout; the next run resumes from the bucket it stopped in. correlation_id (the
    run's id) goes on the decisions it publishes.
    """
    options = options or SweepOptions()
    mark = ports.segments.load_watermark()
    since = mark.value if mark is not None else now - options.lookback
    result = SweepResult(started_from=bucket_start(since), watermark=bucket_start(since))
    accounts = AccountFactsCache(ports.usage, rules.reads_account_usage)
    resume: datetime | None = None  # earliest bucket that may still hold unhandled users

    for page in ports.segments.due(since, now, options.page_size):
        if time_left is not None and time_left() < options.margin_seconds:
            resume, result.complete = page.bucket, False
            break
        result.due += len(page.user_ids)
        users = ports.usage.load_users(page.user_ids)
        records = ports.segments.load(page.user_ids)
        for user_id in page.user_ids:
            record = records[user_id]
            check = record.value.next_check_at
            if check is None or check > now:
                # Already handled (by the stream evaluator, or an index read that lagged).
                result.skipped += 1
                continue
            try:
                loaded = users.get(user_id)
                if loaded is None:
                    # The usage state is gone (erased, or expired: state TTL): so goes the record,
                    # rather than being written again, which would keep it a state TTL longer.
                    ports.segments.erase(user_id)
                    result.skipped += 1
                    continue
                if not loaded.value.addressable:
                    # The id was merged into another user's (who has their own checks), or is an
                    # anonymous profile: nothing left to check.
                    stopped = record.value.model_copy(update={"next_check_at": None})
                    ports.segments.save(user_id, stopped, record.version, now)
                    result.skipped += 1
                    continue
                outcome = evaluate_user(
                    loaded.value,
                    rules,
                    ports,
                    now,
                    state_version=loaded.version,
                    previous=record,
                    accounts=accounts,
                    attempts=options.attempts,
                    correlation_id=correlation_id,
                )
            except Exception:
                result.failed += 1
                logger.exception("sweep: evaluation failed; retrying later", extra={"user_id": user_id})
                try:
                    ports.segments.defer(user_id, now + options.retry_after)
                except Exception:
                    logger.exception(
                        "sweep: could not defer; holding the watermark", extra={"user_id": user_id}
                    )
                    resume = page.bucket if resume is None else min(resume, page.bucket)
                    result.complete = False
                continue
            result.evaluated += 1
            result.published += len(outcome.published)
            result.outcomes.append(outcome)

    through = bucket_start(now - options.settle)
    if resume is not None:
        through = min(through, resume)
    # Never backwards (a local clock moved back).
    through = max(through, result.started_from)
    result.watermark = through
    if mark is None or through != mark.value:
        try:
            ports.segments.save_watermark(through, mark.version if mark else 0, now)
        except StateConflict:
            # Another sweep ran at the same time and moved it; its value is as good as ours.
            logger.warning("sweep: watermark moved by a concurrent sweep")
    ports.metrics.swept(result)
    logger.info("sweep done", extra=result.summary())
    return result
