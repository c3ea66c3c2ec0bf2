"""An account's traits and rollup as the rules read them, read once per account per batch: the
evaluator, the sweep, the send-time journey check, explain, backtest and the rule tests share it
(a module of its own so the send path imports no evaluation service)."""

from __future__ import annotations

from nudge.conditions.features import AccountFacts
from nudge.model.state import AccountRollup
from nudge.ports import UsageStore


class AccountFactsCache:
    """Account traits and rollup, read once per account per batch (many users share an account)."""

    def __init__(self, usage: UsageStore, with_rollup: bool = True) -> None:
        self.usage = usage
        # The rollup (weekly active users per shard) is the largest read; skip it when no rule
        # reads account usage (RuleSet.reads_account_usage).
        self.with_rollup = with_rollup
        self._facts: dict[str, AccountFacts] = {}

    def get(self, account_id: str | None) -> AccountFacts | None:
        if not account_id:
            return None
        facts = self._facts.get(account_id)
        if facts is None:
            account = self.usage.load_account(account_id)
            traits: dict[str, object] = dict(account.value.trait_values()) if account else {}
            rollup = self.usage.load_rollup(account_id) if self.with_rollup else AccountRollup()
            facts = self._facts[account_id] = AccountFacts(traits, rollup)
        return facts

    def forget(self, account_id: str) -> None:
        """Drop what was read of the account: its traits changed, the next `get` reads them again."""
        self._facts.pop(account_id, None)
