"""The one module that talks to durable_rules.

Conditions compile once, at load, into durable_rules rulesets; evaluation asserts one fact (the
user's facts) under a fresh session id, collects the names of the rules that fired (in priority
order), and deletes the session. What durable_rules does not do well is kept out of it: no
timers (time is the sweep's job), no I/O in actions (an exception there is swallowed), no
`$nex` (it hangs the engine here): every fact is always present, with sentinel values, and a
number is never compared with a string (durable_rules then answers true).

Every ruleset carries one rule that always fires: `delete_state` on a session whose fact matched
nothing crashes the process (segfault in durable_rules 2.0.28), so every session must match.
"""

from __future__ import annotations

import copy
import itertools
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from durable.engine import Host, MessageNotHandledException

from nudge.rules.conditions import NEGATE, All, Check, Node, Not, Value

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


class _Host(Host):  # type: ignore[misc]
    """Actions only record which rule fired, for the evaluation under way."""

    def __init__(self) -> None:
        super().__init__()
        self.fired: list[str] = []

    def get_action(self, action_name: str) -> Any:
        def record(_context: Any) -> None:
            self.fired.append(action_name)

        return record


_host: _Host | None = None
_host_lock = threading.Lock()
_names = itertools.count(1)
_sids = itertools.count(1)


def _shared_host() -> _Host:
    """durable_rules starts two threads per Host that never stop: one Host per process."""
    global _host
    with _host_lock:
        if _host is None:
            _host = _Host()
        return _host


class Ruleset:
    """One compiled group of rules (segments, triggers, a score's signals)."""

    def __init__(self, label: str, rules: Sequence[CompiledRule]) -> None:
        self.label = label
        self.rules = list(rules)
        self.name = f"{label}_{next(_names)}"  # a Host refuses a name registered twice
        self.definition: dict[str, Any] = {
            rule.name: {"all": [{"m": to_durable(rule.condition)}], "run": rule.name, "pri": index + 1}
            for index, rule in enumerate(self.rules)
        }
        self.definition[ALWAYS] = {"all": [{"m": {ALWAYS: 1}}], "run": ALWAYS, "pri": len(self.rules) + 1}
        if self.rules:
            # set_rulesets deletes "run" from what it is given: hand it a copy.
            _shared_host().set_rulesets({self.name: copy.deepcopy(self.definition)})

    def matches(self, facts: Mapping[str, Value]) -> list[str]:
        """Names of the rules whose condition holds for `facts`, in file order."""
        if not self.rules:
            return []
        host = _shared_host()
        with _host_lock:
            sid = str(next(_sids))
            host.fired = []
            try:
                host.assert_fact(self.name, {**facts, "sid": sid, ALWAYS: 1})
            except MessageNotHandledException as exc:  # cannot happen: ALWAYS matches
                raise RuntimeError(
                    f"durable_rules matched nothing in {self.label}, not even {ALWAYS}"
                ) from exc
            state = host.get_state(self.name, sid)
            host.delete_state(self.name, sid)
            if "exception" in state:
                raise RuntimeError(f"durable_rules failed evaluating {self.label}: {state['exception']}")
            fired = [name for name in host.fired if name != ALWAYS]
        order = {rule.name: i for i, rule in enumerate(self.rules)}
        return sorted(set(fired), key=order.__getitem__)
