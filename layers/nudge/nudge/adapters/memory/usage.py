"""In-memory UsageStore: what unit tests use, and a readable specification of the DynamoDB one."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime

from nudge.model.errors import StateConflict
from nudge.model.state import AccountRollup, AccountState, RollupDelta, UserState, WeekRollup
from nudge.model.versioned import Versioned


class MemoryUsageStore:
    def __init__(self) -> None:
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
    ) -> None:
        with self._lock:
            current = self.users.get(state.user_id)
            if (current.version if current else 0) != version:
                raise StateConflict(state.user_id)
            self.users[state.user_id] = Versioned(state, version + 1)
            self.writes += 1
            if rollup is not None:
                self._apply(rollup)

    def _apply(self, delta: RollupDelta) -> None:
        rollup = self.rollups.setdefault(delta.account_id, AccountRollup())
        for week, users in delta.week_users.items():
            rollup.weeks.setdefault(week, WeekRollup()).active_users += users
        for week, sessions in delta.week_sessions.items():
            rollup.weeks.setdefault(week, WeekRollup()).sessions += sessions
        for feature, adopters in delta.feature_adopters.items():
            rollup.feature_adopters[feature] = rollup.feature_adopters.get(feature, 0) + adopters

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
            found = sorted(uid for uid, user in self.users.items() if user.value.account_id == account_id)
        return found if limit is None else found[:limit]

    def erase_user(self, user_id: str) -> int:
        with self._lock:
            return 1 if self.users.pop(user_id, None) is not None else 0
