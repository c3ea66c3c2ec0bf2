"""In-memory AccountLedger over a MemoryLedger's own dicts, so dispatch and erasure tests share
one ledger; it reads as the specification of the DynamoDB one."""

from __future__ import annotations

from collections.abc import Sequence

from nudge.adapters.memory.ledger import MemoryLedger
from nudge.model.ledger import Escalation
from nudge.model.versioned import Versioned
from nudge.services.erasure import ERASED


class MemoryAccountLedger:
    def __init__(self, ledger: MemoryLedger) -> None:
        self.ledger = ledger

    def escalation(self, account_id: str) -> Escalation | None:
        with self.ledger.lock:
            found = self.ledger.escalations.get(account_id)
            return found.value if found else None

    def decisions_of(self, account_id: str, user_id: str) -> list[str]:
        subject = f"ACCOUNT#{account_id}"
        with self.ledger.lock:
            return sorted(
                d for (s, d), e in self.ledger.entries.items() if s == subject and e.decision.user == user_id
            )

    def delete_decisions(self, account_id: str, decision_ids: Sequence[str]) -> int:
        with self.ledger.lock:
            for decision_id in decision_ids:
                self.ledger.entries.pop((f"ACCOUNT#{account_id}", decision_id), None)
        return len(decision_ids)

    def anonymize_decision(self, account_id: str, decision_id: str, user_id: str) -> bool:
        key = (f"ACCOUNT#{account_id}", decision_id)
        with self.ledger.lock:
            entry = self.ledger.entries.get(key)
            if entry is None or entry.decision.user != user_id:
                return False
            decision = entry.decision.model_copy(update={"user": ERASED})
            self.ledger.entries[key] = entry.model_copy(update={"decision": decision})
            return True

    def anonymize_escalation(self, account_id: str, user_id: str) -> bool:
        with self.ledger.lock:
            current = self.ledger.escalations.get(account_id)
            if current is None or current.value.user != user_id:
                return False
            anonymous = current.value.model_copy(update={"user": ERASED})
            self.ledger.escalations[account_id] = Versioned(anonymous, current.version + 1)
            return True
