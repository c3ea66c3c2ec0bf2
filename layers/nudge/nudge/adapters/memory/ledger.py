"""The ledger's port, and the in-memory fake that unit tests use (it reads as the specification)."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from datetime import datetime

from nudge.model.delivery import DeliveryRecord
from nudge.model.errors import StateConflict
from nudge.model.ledger import Commit, Escalation, LedgerEntry, Outcome, Status, UserLedger
from nudge.model.versioned import Versioned


class MemoryLedger:
    def __init__(self) -> None:
        self.records: dict[str, Versioned[DeliveryRecord]] = {}
        self.unsubscribed: dict[str, set[str]] = {}
        self.entries: dict[tuple[str, str], LedgerEntry] = {}
        self.escalations: dict[str, Versioned[Escalation]] = {}
        self.lock = threading.Lock()
        self.commits = 0

    def load(self, user_id: str, account_id: str | None, keys: Sequence[tuple[str, str]]) -> UserLedger:
        with self.lock:
            stored = self.records.get(user_id)
            record = (stored.value if stored else DeliveryRecord()).model_copy(deep=True)
            record.unsubscribed = set(self.unsubscribed.get(user_id, set()))
            return UserLedger(
                record=Versioned(record, stored.version if stored else 0),
                entries={key[1]: self.entries[key].model_copy() for key in keys if key in self.entries},
                escalation=self.escalations.get(account_id) if account_id else None,
            )

    def commit(self, commit: Commit, now: datetime) -> None:
        with self.lock:
            stored = self.records.get(commit.user_id)
            if commit.record is not None and (stored.version if stored else 0) != commit.record_version:
                raise StateConflict("delivery record moved")
            for entry in commit.entries:
                existing = self.entries.get((entry.subject, entry.decision_id))
                if entry.decision_id in commit.replacing:
                    if existing is None or existing.outcome != "deferred":
                        raise StateConflict("deferral already resolved")
                elif existing is not None:
                    raise StateConflict("decision already in the ledger")
            if commit.escalation is not None:
                account, _, version = commit.escalation
                current = self.escalations.get(account)
                if (current.version if current else 0) != version:
                    raise StateConflict("escalation moved")
            if commit.record is not None:
                self.records[commit.user_id] = Versioned(
                    commit.record.model_copy(update={"unsubscribed": set()}), commit.record_version + 1
                )
            for entry in commit.entries:
                self.entries[(entry.subject, entry.decision_id)] = entry
            if commit.escalation is not None:
                account, escalation, version = commit.escalation
                self.escalations[account] = Versioned(escalation, version + 1)
            self.commits += 1

    def get(self, subject: str, decision_id: str) -> LedgerEntry | None:
        with self.lock:
            return self.entries.get((subject, decision_id))

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
        with self.lock:
            entry = self.entries.get((subject, decision_id))
            if entry is None or entry.status not in set(expected):
                return None
            update: dict[str, object] = {"status": status, "updated_at": now}
            if outcome is not None:
                update["outcome"] = outcome
            if reason is not None:
                update["reason"] = reason
            if provider_id is not None:
                update["provider_id"] = provider_id
            moved = entry.model_copy(update=update)
            self.entries[(subject, decision_id)] = moved
            return moved

    def record_feedback(self, subject: str, decision_id: str, kind: str, at: datetime) -> LedgerEntry | None:
        with self.lock:
            entry = self.entries.get((subject, decision_id))
            if entry is None:
                return None
            if kind not in entry.feedback:
                entry = entry.model_copy(update={"feedback": {**entry.feedback, kind: at}})
                self.entries[(subject, decision_id)] = entry
            return entry

    def entries_of(self, user_id: str) -> list[LedgerEntry]:
        with self.lock:
            return sorted(
                (e for (s, _), e in self.entries.items() if s == f"USER#{user_id}"),
                key=lambda e: (e.recorded_at, e.decision_id),
            )

    def unsubscribe(self, user_id: str, scope: str, now: datetime) -> None:
        with self.lock:
            self.unsubscribed.setdefault(user_id, set()).add(scope)

    def handle_escalation(self, account_id: str, by: str, now: datetime) -> bool:
        with self.lock:
            current = self.escalations.get(account_id)
            if current is None or current.value.handled_at is not None:
                return False
            handled = current.value.model_copy(update={"handled_at": now, "handled_by": by})
            self.escalations[account_id] = Versioned(handled, current.version + 1)
            return True

    def erase_user(self, user_id: str) -> int:
        with self.lock:
            keys = [k for k in self.entries if k[0] == f"USER#{user_id}"]
            for key in keys:
                del self.entries[key]
            count = len(keys) + (user_id in self.records) + (user_id in self.unsubscribed)
            self.records.pop(user_id, None)
            self.unsubscribed.pop(user_id, None)
            return count

    def adopt(self, user_id: str, sources: Sequence[str], now: datetime) -> None:
        with self.lock:
            stored = self.records.get(user_id)
            record = (stored.value if stored else DeliveryRecord()).model_copy(deep=True)
            record.unsubscribed = set(self.unsubscribed.get(user_id, set()))
            for source in sources:
                other = self.records.get(source)
                theirs = (other.value if other else DeliveryRecord()).model_copy(deep=True)
                theirs.unsubscribed = set(self.unsubscribed.get(source, set()))
                record = record.absorb(theirs, source)
            if record.unsubscribed:
                self.unsubscribed.setdefault(user_id, set()).update(record.unsubscribed)
            self.records[user_id] = Versioned(
                record.model_copy(update={"unsubscribed": set()}), (stored.version if stored else 0) + 1
            )

    # -- customer success (services.escalations): the escalations, and the note left on handling

    @property
    def escalation_notes(self) -> dict[tuple[str, str], str]:
        """Handling notes by (account id, escalation decision id), made on first use."""
        notes: dict[tuple[str, str], str] = self.__dict__.setdefault("_escalation_notes", {})
        return notes

    def escalation_of(self, account_id: str) -> tuple[Versioned[Escalation], str] | None:
        """The account's escalation (open or handled) and the note left when it was handled."""
        with self.lock:
            current = self.escalations.get(account_id)
            if current is None:
                return None
            return current, self.escalation_notes.get((account_id, current.value.decision_id), "")

    def list_escalations(self) -> list[tuple[str, Escalation, str]]:
        """Every account's escalation, open or handled: (account id, escalation, handling note)."""
        with self.lock:
            return [
                (account, stored.value, self.escalation_notes.get((account, stored.value.decision_id), ""))
                for account, stored in sorted(self.escalations.items())
            ]

    def handle_escalation_noted(
        self, account_id: str, decision_id: str, by: str, note: str, now: datetime
    ) -> Escalation | None:
        """Mark the account's escalation `decision_id` handled by `by`, keeping `note` with it. The
        handled escalation; None when that is not the account's escalation or it was handled."""
        with self.lock:
            current = self.escalations.get(account_id)
            if current is None or current.value.decision_id != decision_id or current.value.handled_at:
                return None
            handled = current.value.model_copy(update={"handled_at": now, "handled_by": by})
            self.escalations[account_id] = Versioned(handled, current.version + 1)
            self.escalation_notes[(account_id, decision_id)] = note
            return handled
