"""What the ingest service needs from storage; one DynamoDB implementation and one in-memory fake."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, Protocol, TypeVar

from nudge.model.state import AccountRollup, AccountState, RollupDelta, UserState

T = TypeVar("T")


@dataclass(frozen=True)
class Versioned(Generic[T]):
    """A stored value and the version it was read at; version 0 means 'not stored yet'."""

    value: T
    version: int


class UsageStore(Protocol):
    def load_users(self, user_ids: Sequence[str]) -> dict[str, Versioned[UserState]]: ...

    def save_user(
        self,
        state: UserState,
        version: int,
        rollup: RollupDelta | None,
        now: datetime,
        correlation_id: str = "",
    ) -> None:
        """Write `state` as version+1 if the stored version is still `version`; else StateConflict.

        `correlation_id` (the API request's id) goes with the write, for the evaluator's logs."""
        ...

    def load_account(self, account_id: str) -> Versioned[AccountState] | None: ...

    def save_account(self, state: AccountState, version: int, now: datetime) -> None: ...

    def load_rollup(self, account_id: str) -> AccountRollup: ...

    def users_of_account(self, account_id: str, limit: int | None = None) -> list[str]:
        """The ids of the users whose state names `account_id`, sorted; at most `limit` of them."""
        ...

    def erase_user(self, user_id: str) -> int:
        """Delete everything stored under the user (erasure); how many items. Idempotent."""
        ...
