"""In-memory UsageStore: what unit tests use, and a readable specification of the DynamoDB one."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime

from nudge.adapters.dynamo import codec
from nudge.adapters.memory.rollups import add
from nudge.model.errors import ItemTooLarge, StateConflict, StoreUnavailable
from nudge.model.state import AccountRollup, AccountState, RollupDelta, UserState
from nudge.model.versioned import Versioned

# DynamoDB's TransactWriteItems takes at most this many items; more is a ValidationException.
TRANSACTION_ITEMS = 100


def transaction_items(rollup: RollupDelta | None, absorbed: Sequence[tuple[str, int]]) -> int:
    """How many items the DynamoDB store's save_user writes at once: the person, and a pointer and
    a back-reference per absorbed id (a transaction when there are any; else one PutItem). The
    rollup delta rides on the person's item and is applied off the write (from the stream), so
    it adds none."""
    return 1 + 2 * len(absorbed)


class MemoryUsageStore:
    """Rollup deltas are applied with the write (the DynamoDB store applies them from the stream,
    a batch later): the port's contract, exactly once, eventually, holds for both.
    `max_item_bytes`: the bound on a user's encoded state (as DynamoUsageStore bounds the item
    holding it); None, the default, checks none, so tests and benchmarks that never come near it
    pay no encoding."""

    def __init__(self, max_item_bytes: int | None = None) -> None:
        self.max_item_bytes = max_item_bytes
        self._lock = threading.Lock()
        self.users: dict[str, Versioned[UserState]] = {}
        self.accounts: dict[str, Versioned[AccountState]] = {}
        self.rollups: dict[str, AccountRollup] = {}
        self.writes = 0

    def load_users(self, user_ids: Sequence[str]) -> dict[str, Versioned[UserState]]:
        with self._lock:
            return {uid: self.users[uid] for uid in user_ids if uid in self.users}

    def save_user(
        self,
        state: UserState,
        version: int,
        rollup: RollupDelta | None,
        now: datetime,
        correlation_id: str = "",
        absorbed: Sequence[tuple[str, int]] = (),
    ) -> None:
        if self.max_item_bytes is not None and len(codec.encode(state)) > self.max_item_bytes:
            raise ItemTooLarge(len(codec.encode(state)), self.max_item_bytes)
        items = transaction_items(rollup, absorbed)
        if items > TRANSACTION_ITEMS:
            # As DynamoDB refuses it (ValidationException), which the store reports so.
            raise StoreUnavailable(
                f"DynamoDB ValidationException: a transaction of {items} items (at most {TRANSACTION_ITEMS})"
            )
        with self._lock:
            # All of it or nothing, as DynamoDB's transaction: every version still as read.
            for user_id, expected in [(state.user_id, version), *absorbed]:
                current = self.users.get(user_id)
                if (current.version if current else 0) != expected:
                    raise StateConflict(user_id)
            self.users[state.user_id] = Versioned(state, version + 1)
            for user_id, expected in absorbed:
                pointer = UserState(user_id=user_id, merged_into=state.user_id)
                self.users[user_id] = Versioned(pointer, expected + 1)
            self.writes += 1
            if rollup is not None:
                self._apply(rollup)

    def fits(self, state: UserState, correlation_id: str = "", rollup: RollupDelta | None = None) -> bool:
        return self.max_item_bytes is None or len(codec.encode(state)) <= self.max_item_bytes

    def merged_ids(self, user_id: str) -> list[str]:
        with self._lock:
            found: list[str] = []
            targets = {user_id}
            while targets:
                sources = sorted(uid for uid, u in self.users.items() if u.value.merged_into in targets)
                found += sources
                targets = set(sources)
            return found

    def _apply(self, delta: RollupDelta) -> None:
        add(self.rollups.setdefault(delta.account_id, AccountRollup()), delta)

    def load_account(self, account_id: str) -> Versioned[AccountState] | None:
        with self._lock:
            return self.accounts.get(account_id)

    def save_account(self, state: AccountState, version: int, now: datetime) -> None:
        with self._lock:
            current = self.accounts.get(state.account_id)
            if (current.version if current else 0) != version:
                raise StateConflict(state.account_id)
            self.accounts[state.account_id] = Versioned(state, version + 1)
            self.writes += 1

    def load_rollup(self, account_id: str) -> AccountRollup:
        with self._lock:
            return self.rollups.get(account_id, AccountRollup()).model_copy(deep=True)

    def users_of_account(self, account_id: str, limit: int | None = None) -> list[str]:
        with self._lock:
            found = sorted(
                uid
                for uid, user in self.users.items()
                if user.value.account_id == account_id and user.value.addressable
            )
        return found if limit is None else found[:limit]

    def erase_user(self, user_id: str) -> int:
        with self._lock:
            return 1 if self.users.pop(user_id, None) is not None else 0
