"""Erasure (right to be forgotten): delete what Nudge holds about one user.

What goes:
- the usage table's USER#<id> partition: usage state (traits, counts, account membership, which
  also takes the user out of the by_account index), segment record (and its due-index entry),
  anything else kept there;
- the ledger's USER#<id> partition: delivery record, unsubscribes, every message decision;
- the escalation decisions the user raised for an account (ACCOUNT#<acct>/DECISION#<id> whose
  user is them).

What stays, and why:
- the account rollups (weekly active users, sessions, feature adopters): counts, no ids;
- the decision behind the account's escalation while it is not yet handled: customer success
  is working it and the escalate function may still deliver it, so it is kept with its user
  replaced by ERASED (as is the escalation record's user) rather than deleted.

Order: the accounts are found first (from the usage state and the ledger entries), the usage
state is deleted last, so an erasure that fails half-way finds everything left when retried.
Every step is idempotent: erasing a user with nothing stored deletes nothing.
Merged ids go with the person: every id merged into the user (UsageStore.merged_ids: anonymous
devices, userIds aliased into them, and theirs in turn) is erased the same way, its pointer
included, so no record is left saying that id was them.
An id merged away (its state a pointer, `merged_into`) names the person it was merged into: erasing
it erases that whole person (`chain_of` follows the pointers), since the request is about that
human, and the answer names them (`Erasure.merged_into`). Export (services/export.py) covers the
same ids (`ids_of`).
Unsubscribes go with the delivery record, but the suppression list stays (nudge.services.suppression:
keyed hashes of addresses, no user id, and no function may delete from it): the same email address
or phone number tracked again, under any id, still gets nothing in the scopes it left.
Known gap: a decision already on a queue when the user is erased may record ledger entries again
a moment later (its send is suppressed: there is no address left); erasing again removes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from nudge.model.ledger import Escalation
from nudge.ports import Ledger, SegmentStore, UsageStore
from nudge.services.identity import MAX_HOPS

# What an anonymised decision or escalation names instead of the erased user.
ERASED = "erased"


class AccountLedger(Protocol):
    """The account side of the ledger, as erasure needs it."""

    def escalation(self, account_id: str) -> Escalation | None: ...

    def decisions_of(self, account_id: str, user_id: str) -> list[str]:
        """The ids of the account's decisions (escalations) that `user_id` raised."""
        ...

    def delete_decisions(self, account_id: str, decision_ids: Sequence[str]) -> int:
        """Delete those decisions; how many were asked (deleting a missing one is no error)."""
        ...

    def anonymize_decision(self, account_id: str, decision_id: str, user_id: str) -> bool:
        """Replace the decision's user by ERASED if it is still `user_id`; whether it changed."""
        ...

    def anonymize_escalation(self, account_id: str, user_id: str) -> bool:
        """Replace the escalation's user by ERASED if it is `user_id`; whether it changed."""
        ...


@dataclass(frozen=True)
class Erasure:
    usage: int  # usage-table items deleted
    ledger: int  # ledger items deleted (the user's and their account decisions)
    anonymized: int  # account items kept with the user replaced by ERASED
    # The person erased in the asked id's place when that id had been merged into them; else None.
    merged_into: str | None = None


def chain_of(user_id: str, usage: UsageStore) -> list[str]:
    """`user_id` and the profiles its `merged_into` pointers lead to, in order (an alias or an
    identify merged it away; at most MAX_HOPS reads): the last is the person it belongs to now."""
    chain = [user_id]
    for _ in range(MAX_HOPS):
        state = usage.load_users([chain[-1]]).get(chain[-1])
        target = state.value.merged_into if state is not None else None
        if target is None or target in chain:
            break
        chain.append(target)
    return chain


def ids_of(chain: Sequence[str], usage: UsageStore) -> list[str]:
    """The ids erasure (and export) covers for the id `chain` starts from: every id merged into
    the person (UsageStore.merged_ids), deepest first, then the chain from the person back to the
    asked id. The chain goes last, the asked id's pointer at the very end, so a retry after a
    failure half-way, asked the same id, still follows it to whatever is left."""
    on_chain = set(chain)
    merged = [i for i in reversed(usage.merged_ids(chain[-1])) if i not in on_chain]
    return [*merged, *reversed(chain)]


def erase_user(
    user_id: str, *, usage: UsageStore, segments: SegmentStore, ledger: Ledger, accounts: AccountLedger
) -> Erasure:
    chain = chain_of(user_id, usage)
    total = Erasure(usage=0, ledger=0, anonymized=0, merged_into=chain[-1] if len(chain) > 1 else None)
    for erased in ids_of(chain, usage):
        one = _erase_one(erased, usage=usage, segments=segments, ledger=ledger, accounts=accounts)
        total = Erasure(
            usage=total.usage + one.usage,
            ledger=total.ledger + one.ledger,
            anonymized=total.anonymized + one.anonymized,
            merged_into=total.merged_into,
        )
    return total


def _erase_one(
    user_id: str, *, usage: UsageStore, segments: SegmentStore, ledger: Ledger, accounts: AccountLedger
) -> Erasure:
    state = usage.load_users([user_id]).get(user_id)
    account_ids = {e.decision.account for e in ledger.entries_of(user_id) if e.decision.account}
    if state is not None and state.value.account_id:
        account_ids.add(state.value.account_id)

    deleted_ledger = anonymized = 0
    for account_id in sorted(account_ids):
        escalation = accounts.escalation(account_id)
        # A handled escalation is done with; an unhandled one may still be delivered to CS.
        keep = escalation.decision_id if escalation is not None and escalation.handled_at is None else None
        raised = accounts.decisions_of(account_id, user_id)
        deleted_ledger += accounts.delete_decisions(account_id, [d for d in raised if d != keep])
        if keep is not None and keep in raised:
            anonymized += accounts.anonymize_decision(account_id, keep, user_id)
        if escalation is not None and escalation.user == user_id:
            anonymized += accounts.anonymize_escalation(account_id, user_id)

    deleted_ledger += ledger.erase_user(user_id)
    deleted_usage = segments.erase(user_id) + usage.erase_user(user_id)
    return Erasure(usage=deleted_usage, ledger=deleted_ledger, anonymized=anonymized)
