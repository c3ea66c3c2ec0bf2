"""What the ingest service needs from storage; one DynamoDB implementation and one in-memory fake."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import date, datetime
from typing import Any, Protocol

from nudge.domain.webhooks import WebhookMessage
from nudge.model.changes import Change
from nudge.model.channels import Email, EscalationCase, Push, Sms
from nudge.model.decisions import Decision
from nudge.model.inapp import InAppMessage
from nudge.model.journeys import JourneyInstance
from nudge.model.ledger import Commit, Escalation, LedgerEntry, Outcome, Status, UserLedger
from nudge.model.outcomes import SweepResult, UserOutcome
from nudge.model.queue import DecisionBatch, Delivery
from nudge.model.segments import DuePage, SegmentRecord
from nudge.model.state import AccountRollup, AccountState, RollupDelta, UserState
from nudge.model.suppression import Suppression
from nudge.model.versioned import Versioned


class UsageStore(Protocol):
    def load_users(self, user_ids: Sequence[str]) -> dict[str, Versioned[UserState]]: ...

    def save_user(
        self,
        state: UserState,
        version: int,
        rollup: RollupDelta | None,
        now: datetime,
        correlation_id: str = "",
        absorbed: Sequence[tuple[str, int]] = (),
    ) -> None:
        """Write `state` as version+1 if the stored version is still `version`; else StateConflict.

        `correlation_id` (the API request's id) goes with the write, for the evaluator's logs.
        `absorbed`: (id, version read) of each profile merged into `state` by this write; each
        becomes a pointer to `state.user_id` (a UserState holding only `merged_into`) in the same
        atomic write, on the same version condition as the user's own.
        ItemTooLarge, writing nothing, when the user's item would be over the store's bound."""
        ...

    def fits(self, state: UserState, correlation_id: str = "", rollup: RollupDelta | None = None) -> bool:
        """Whether save_user would take `state` with `rollup` (its item within the store's bound)."""
        ...

    def merged_ids(self, user_id: str) -> list[str]:
        """Every id merged into the user, directly or through another merged id (for erasure)."""
        ...

    def load_account(self, account_id: str) -> Versioned[AccountState] | None: ...

    def save_account(self, state: AccountState, version: int, now: datetime) -> None:
        """Versioned as save_user (StateConflict); ItemTooLarge past the store's bound."""
        ...

    def load_rollup(self, account_id: str) -> AccountRollup:
        """The account's usage: every user write's rollup delta counted exactly once, eventually
        (the DynamoDB store applies them off the user's write, from the table's stream: a read may
        be a stream batch behind; the in-memory store applies them with the write)."""
        ...

    def users_of_account(self, account_id: str, limit: int | None = None) -> list[str]:
        """The ids of the users whose state names `account_id`, sorted; at most `limit` of them."""
        ...

    def erase_user(self, user_id: str) -> int:
        """Delete everything stored under the user (erasure); how many items. Idempotent."""
        ...


class RollupLedger(Protocol):
    """Where the rollup consumer adds a stream batch's deltas to the accounts' rollups."""

    def apply(
        self,
        run: str,
        through: str,
        deltas: Sequence[RollupDelta],
        now: datetime,
        applied_through: str | None = None,
    ) -> str | None:
        """Add `deltas` to their accounts' rollups and record run `run` (its first record's eventID)
        as applied through sequence number `through`, all at once, if the run's marker is
        still as the caller knows it: absent (`applied_through` None) or at `applied_through`.
        None when applied; otherwise the sequence number the marker holds (nothing written).
        StateConflict when a concurrent writer cancelled it (try again)."""
        ...


class SegmentStore(Protocol):
    def load(self, user_ids: Sequence[str]) -> dict[str, Versioned[SegmentRecord]]:
        """Every id asked for; a user never evaluated gets an empty record at version 0."""
        ...

    def save(self, user_id: str, record: SegmentRecord, version: int, now: datetime) -> None:
        """Write `record` as version+1 if the stored version is still `version`; else StateConflict.

        The re-check schedule follows record.next_check_at (None: the user leaves the index)."""
        ...

    def defer(self, user_id: str, at: datetime) -> None:
        """Move an existing user's re-check to `at` without touching the record (sweep failures)."""
        ...

    def due(self, since: datetime, now: datetime, page_size: int = 100) -> Iterator[DuePage]:
        """Users due at or before `now`, from the bucket of `since` through the bucket of `now`."""
        ...

    def load_watermark(self) -> Versioned[datetime] | None: ...

    def save_watermark(self, through: datetime, version: int, now: datetime) -> None:
        """Versioned like a record: a concurrent sweep's watermark is not overwritten blindly."""
        ...

    def erase(self, user_id: str) -> int:
        """Delete the user's record (erasure): it leaves the due index with it; how many (0 or 1)."""
        ...


class Ledger(Protocol):
    def load(self, user_id: str, account_id: str | None, keys: Sequence[tuple[str, str]]) -> UserLedger:
        """The user's delivery record, the entries of `keys` ((subject, decision id)) that exist,
        and the account's escalation."""
        ...

    def commit(self, commit: Commit, now: datetime) -> None:
        """All of it or nothing; StateConflict when anything changed since `load`."""
        ...

    def get(self, subject: str, decision_id: str) -> LedgerEntry | None: ...

    def move(
        self,
        subject: str,
        decision_id: str,
        expected: Iterable[Status],
        status: Status,
        now: datetime,
        *,
        outcome: Outcome | None = None,
        reason: str | None = None,
        provider_id: str | None = None,
    ) -> LedgerEntry | None:
        """Move an entry's status only if it is one of `expected` (a conditional write): the claim
        that makes a send happen at most once. None when the entry was elsewhere (or missing)."""
        ...

    def entries_of(self, user_id: str) -> list[LedgerEntry]: ...

    def unsubscribe(self, user_id: str, scope: str, now: datetime) -> None:
        """Remember that the user wants no more of `scope` (idempotent; no version needed)."""
        ...

    def handle_escalation(self, account_id: str, by: str, now: datetime) -> bool: ...

    def erase_user(self, user_id: str) -> int:
        """Delete every ledger item of the user; how many."""
        ...

    def adopt(self, user_id: str, sources: Sequence[str], now: datetime) -> None:
        """Fold the delivery records (sends, each rule's last send, unsubscribes) of ids merged
        into the user into the user's own, so caps, cooldowns and opt-outs follow the merge.
        Idempotent (each source is listed in `DeliveryRecord.adopted`); StateConflict if the
        user's record moved meanwhile."""
        ...


class SuppressionStore(Protocol):
    """The suppression list: addresses (keyed hashes) and the scopes they must not get. Nothing
    deletes from it, erasure included: that is what it is for."""

    def add(self, suppression: Suppression) -> None:
        """Record it (idempotent: a key and scope recorded before keep their first reason and time)."""
        ...

    def find(self, keys: Sequence[str]) -> list[Suppression]:
        """Every record under any of `keys`; StoreUnavailable when the list cannot be read."""
        ...


class SoftBounces(Protocol):
    """Each address's recent transient bounces (message id, time), versioned: the feedback function
    reads, adds one, and writes back on the version it read."""

    def load(self, key: str) -> Versioned[list[tuple[str, datetime]]]: ...

    def save(
        self, key: str, bounces: Sequence[tuple[str, datetime]], version: int, expires_at: datetime
    ) -> None:
        """StateConflict when the stored version is no longer `version`."""
        ...


class FeedbackLedger(Protocol):
    """What the feedback function needs of the ledger."""

    def record_feedback(self, subject: str, decision_id: str, kind: str, at: datetime) -> LedgerEntry | None:
        """Note `kind` on the entry (its first time stays); None: no such entry."""
        ...


class CsLedger(Protocol):
    """What customer success needs of the ledger (DynamoLedger and MemoryLedger have it)."""

    def get(self, subject: str, decision_id: str) -> LedgerEntry | None: ...

    def escalation_of(self, account_id: str) -> tuple[Versioned[Escalation], str] | None: ...

    def list_escalations(self) -> list[tuple[str, Escalation, str]]: ...

    def handle_escalation_noted(
        self, account_id: str, decision_id: str, by: str, note: str, now: datetime
    ) -> Escalation | None: ...


class EmailSender(Protocol):
    def send(self, email: Email) -> str:
        """Hand `email` to the channel and return its message id, or raise a SendError."""
        ...


class Notifier(Protocol):
    def send_sms(self, sms: Sms) -> str: ...

    def send_push(self, push: Push) -> str: ...


class DestinationPoster(Protocol):
    """Posts to the destinations of rules/destinations.yaml (their secrets are the poster's)."""

    def post_signed(self, destination: str, url: str, message: WebhookMessage) -> str:
        """POST `message` signed with the destination's secret; its webhook id on a 2xx, else
        ReceiverUnavailable (retry later, same id) or SendRejected."""
        ...

    def post_slack(self, destination: str, body: Mapping[str, Any]) -> str:
        """POST `body` to the destination's Slack incoming webhook (its URL is a secret)."""
        ...


class Inbox(Protocol):
    """Users' in-app messages, each until it expires (the in-app channel's store)."""

    def put(self, message: InAppMessage) -> bool:
        """Store `message` unless one with its id is there already (False then: at most once)."""
        ...

    def get(self, user_id: str, message_id: str) -> InAppMessage | None: ...

    def list(self, user_id: str, now: datetime, limit: int) -> list[InAppMessage]:
        """The user's live messages (not expired), newest first, at most `limit`."""
        ...

    def replace(self, message: InAppMessage, expected_status: str) -> bool:
        """Write `message` (a new status, an answer) if the stored one is still at
        `expected_status`; False if it moved meanwhile or is gone."""
        ...


class EscalationDesk(Protocol):
    def open(self, case: EscalationCase, day: date) -> str:
        """Queue `case` (at most once per account, rule and day) and return its message id."""
        ...


class PushEndpoints(Protocol):
    def endpoint(self, token: str) -> str:
        """The platform endpoint that reaches a device token (made on first use)."""
        ...


class PublishFailed(Exception):
    """Some decisions did not reach the decision queue; the evaluation must be retried."""


class DecisionPublisher(Protocol):
    def publish(self, batch: DecisionBatch) -> None:
        """Put one evaluation's decisions on the decision queue, or raise PublishFailed."""
        ...


class ChangesNotPublished(Exception):
    """Some changes did not reach the event bus; the stream record must be retried."""


class ChangePublisher(Protocol):
    def publish(self, changes: Sequence[Change]) -> None:
        """Put each change on the bus (at least once), or raise ChangesNotPublished."""
        ...


class RouteFailed(Exception):
    """A send could not be put on its channel queue; the batch must be retried."""


class DeliveryRouter(Protocol):
    def route(self, deliveries: Sequence[Delivery]) -> None: ...


class Rechecks(Protocol):
    def defer(self, user_id: str, decision: Decision, until: datetime, now: datetime) -> None:
        """Have the sweep re-check `decision`'s rule for the user at `until` (idempotent)."""
        ...

    def end_journey(self, user_id: str, decision: Decision, now: datetime) -> None:
        """End the journey instance `decision` was sent from (its send was blocked; idempotent)."""
        ...

    def saved_journeys(self, user_id: str) -> Mapping[str, JourneyInstance]:
        """The user's journey instances as last saved (strongly consistent; none: no record yet)."""
        ...


class EvaluationMetrics(Protocol):
    def outcome(self, outcome: UserOutcome) -> None: ...

    def swept(self, result: SweepResult) -> None: ...


class RateCounter(Protocol):
    def take(self, bucket: str, amount: int, limit: int, expires_at: int) -> bool:
        """Add `amount` to the bucket's count if it stays within `limit`; whether it did.
        StoreUnavailable when the count could not be read or written."""
        ...


class IngestBuffer(Protocol):
    def put(self, bodies: Sequence[str]) -> None:
        """Keep each body durably for the ingest queue's consumer (services.buffer), all or
        raise StoreUnavailable: the front door then answers 503 and the SDK sends again."""
        ...
