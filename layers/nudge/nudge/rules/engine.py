"""The one module that talks to durable_rules.

Conditions compile once, at load, into durable_rules rulesets; evaluation asserts one fact (the
facts the ruleset's conditions read) under a fresh session id, collects the names of the rules
that fired (in priority order), and deletes the session. What durable_rules does not do well is
kept out of it: no timers (time is the sweep's job), no actions at all (an exception in one is
swallowed), no `$nex` (it hangs the engine here): every fact is always present, with sentinel
values, and a number is never compared with a string (durable_rules then answers true).

The rulesets live in durable_rules' engine (`durable_rules_engine`, the compiled core that
`durable.engine.Host` wraps), driven directly: assert the fact, then take the rules that fired
one by one (`start_action_for_state` / `complete_and_start_action`) without running a Python
action for each. A Host would add, per fired rule, a JSON round trip of the session state and
of the whole fact, and two background threads that dispatch pending actions on their own (and
could take one of ours): on the sample users that made the three passes of an evaluation about
five times slower (`make bench`, section 4).

Every ruleset carries one rule that always fires: `delete_state` on a session whose fact matched
nothing crashes the process (segfault in durable_rules 2.0.28), so every session must match.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import durable_rules_engine

from nudge.rules.conditions import NEGATE, All, Check, Node, Not, Value, checks_in

ALWAYS = "nudge_evaluated"


def to_durable(node: Node, negate: bool = False) -> dict[str, Any]:
    """A condition as a durable_rules expression; `not` is pushed down to the tests (De Morgan)."""
    if isinstance(node, Check):
        op = NEGATE[node.op] if negate else node.op
        value: Any = node.value
        if op == "eq":
            return {node.fact.key: value}
        return {f"${op}": {node.fact.key: value}}
    if isinstance(node, Not):
        return to_durable(node.item, not negate)
    parts = [to_durable(n, negate) for n in node.items]
    if len(parts) == 1:
        return parts[0]
    conjunction = isinstance(node, All) != negate
    return {"$and" if conjunction else "$or": parts}


@dataclass(frozen=True)
class CompiledRule:
    name: str
    condition: Node


# durable_rules' engine is not thread-safe: one evaluation at a time in a process.
_lock = threading.Lock()
_names = itertools.count(1)
_sids = itertools.count(1)

# durable_rules_engine.assert_fact answers (code, state handle); 0 is "handled" (durable.engine
# reads 1 as not handled, 2 as already observed, 3 as queued).
_HANDLED = 0


class Ruleset:
    """One compiled group of rules (segments, triggers, a score's signals)."""

    def __init__(self, label: str, rules: Sequence[CompiledRule]) -> None:
        self.label = label
        self.rules = list(rules)
        self.name = f"{label}_{next(_names)}"  # one engine ruleset per compiled group
        self.definition: dict[str, Any] = {
            rule.name: {"all": [{"m": to_durable(rule.condition)}], "pri": index + 1}
            for index, rule in enumerate(self.rules)
        }
        self.definition[ALWAYS] = {"all": [{"m": {ALWAYS: 1}}], "pri": len(self.rules) + 1}
        # Only what the conditions read is asserted: the rest of a user's facts would be
        # serialized and parsed for nothing.
        self.keys = sorted({check.fact.key for rule in self.rules for check in checks_in(rule.condition)})
        self._order = {rule.name: i for i, rule in enumerate(self.rules)}
        self._handle: int | None = None
        if self.rules:
            self._handle = durable_rules_engine.create_ruleset(
                self.name, json.dumps(self.definition, ensure_ascii=False)
            )

    def matches(self, facts: Mapping[str, Value]) -> list[str]:
        """Names of the rules whose condition holds for `facts`, in file order."""
        if self._handle is None:
            return []
        fact: dict[str, Any] = {key: facts[key] for key in self.keys}
        fired: list[str] = []
        with _lock:
            sid = str(next(_sids))
            fact["sid"], fact[ALWAYS] = sid, 1
            code, state = durable_rules_engine.assert_fact(self._handle, json.dumps(fact, ensure_ascii=False))
            if code != _HANDLED:  # cannot happen: ALWAYS matches and every sid is fresh
                raise RuntimeError(f"durable_rules did not handle the fact in {self.label} (code {code})")
            try:
                action = durable_rules_engine.start_action_for_state(self._handle, state)
                message: str | None = action[1] if action else None
                while message:
                    fired.append(self._rule_of(message))
                    message = durable_rules_engine.complete_and_start_action(self._handle, state)
            finally:
                durable_rules_engine.delete_state(self._handle, sid)
        if ALWAYS not in fired:
            raise RuntimeError(f"durable_rules matched nothing in {self.label}, not even {ALWAYS}")
        return sorted({name for name in fired if name != ALWAYS}, key=self._order.__getitem__)

    def _rule_of(self, message: str) -> str:
        """The rule an action message is for: `{"<rule>":{"m":{...}}}`. Rule names are plain
        identifiers, so the name is read without parsing the fact that follows it."""
        name = message[2 : message.find('"', 2)] if message.startswith('{"') else ""
        if name in self._order or name == ALWAYS:
            return name
        return str(next(iter(json.loads(message))))
