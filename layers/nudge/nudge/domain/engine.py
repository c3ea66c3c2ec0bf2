"""The one module that talks to durable_rules.

A rule set's condition groups compile once, on its first evaluation (`compiled`), into
durable_rules rulesets; evaluation asserts one fact (the facts the ruleset's conditions read, as
JSON by orjson) in the ruleset's one session, collects the names of the rules that fired (in
priority order), and retracts the fact, which leaves the session as it was for the next
evaluation (cheaper than deleting the session and making a new one each time). A session an
error leaves in doubt is deleted, and the ruleset moves to a new one. What durable_rules does
not do well is kept out of it: no timers (time is the sweep's job), no actions at all (an
exception in one is swallowed), no `$nex` (it hangs the engine here): every fact is always
present, with sentinel values, and a number is never compared with a string (durable_rules then
answers true).

The rulesets live in durable_rules' engine (`durable_rules_engine`, the compiled core that
`durable.engine.Host` wraps), driven directly: assert the fact, then take the rules that fired
one by one (`start_action_for_state` / `complete_and_start_action`) without running a Python
action for each. A Host would add, per fired rule, a JSON round trip of the session state and
of the whole fact, and two background threads that dispatch pending actions on their own (and
could take one of ours): on the sample users that made the three passes of an evaluation about
five times slower (`make bench`, section 4).

Numbers: durable_rules refuses a number written with an exponent but no decimal point (`1e+19`,
`1e-07`, which is how Python and orjson write floats from 1e16 up and under 1e-4), failing the
whole evaluation; every such float is written with one (`1.0e+19`), in facts and rules alike. A
fact that is not a finite number (or an integer past 64 bits) raises UnreadableFact before anything
is asserted: evaluate treats that fact as missing and reports it.

Every ruleset carries one rule that always fires: `delete_state` on a session whose fact matched
nothing crashes the process (segfault in durable_rules 2.0.28), so every session must match (and
assert_fact answers 1, not handled, for a fact that matches nothing).
"""

from __future__ import annotations

import itertools
import json
import math
import re
import threading
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import durable_rules_engine
import orjson

from nudge.conditions.tree import NEGATE, All, Check, ConditionGroup, NamedCondition, Node, Not, checks_in
from nudge.model.decisions import Value

ALWAYS = "nudge_evaluated"


class UnreadableFact(ValueError):
    """A fact whose value durable_rules cannot read (not a finite number, or an integer past 64
    bits): found before the fact is asserted, so the session is untouched."""

    def __init__(self, key: str) -> None:
        super().__init__(f"fact {key} is not a number durable_rules can read")
        self.key = key


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


# durable_rules' engine is not thread-safe: one evaluation at a time in a process.
_lock = threading.Lock()
_names = itertools.count(1)
_sids = itertools.count(1)

# durable_rules_engine.assert_fact answers (code, state handle); 0 is "handled" (durable.engine
# reads 1 as not handled, 2 as already observed, 3 as queued).
_HANDLED = 0


class CompiledGroup:
    """One compiled group of rules (segments, triggers, a score's signals)."""

    def __init__(self, label: str, rules: Sequence[NamedCondition]) -> None:
        self.label = label
        self.rules = list(rules)
        self.name = f"{label}_{next(_names)}"  # one engine ruleset per compiled group
        # In the engine a rule is named by its position, all names of one width ("r07"; ALWAYS
        # last): the rule an action is for is then read off a fixed slice of its message.
        width = len(str(len(self.rules)))
        engine_names = [f"r{index:0{width}d}" for index in range(len(self.rules) + 1)]
        self.definition: dict[str, Any] = {
            engine_names[index]: {"all": [{"m": to_durable(rule.condition)}], "pri": index + 1}
            for index, rule in enumerate(self.rules)
        }
        self.definition[engine_names[-1]] = {"all": [{"m": {ALWAYS: 1}}], "pri": len(self.rules) + 1}
        # Only what the conditions read is asserted: the rest of a user's facts would be
        # serialized and parsed for nothing.
        self.keys = sorted({check.fact.key for rule in self.rules for check in checks_in(rule.condition)})
        self._names = [rule.name for rule in self.rules]
        self._order = {name: i for i, name in enumerate(engine_names)}
        self._always = len(self.rules)
        self._end = 2 + len(engine_names[0])  # an action message is {"<engine name>":{"m":{...}}}
        self._handle: int | None = None
        self._sid = str(next(_sids))  # this ruleset's one session: a fact at a time, retracted after
        if self.rules:
            self._handle = durable_rules_engine.create_ruleset(self.name, durable_json(self.definition))

    def matches(self, facts: Mapping[str, Value]) -> list[str]:
        """Names of the rules whose condition holds for `facts`, in file order."""
        handle = self._handle
        if handle is None:
            return []
        fact: dict[str, Any] = {key: facts[key] for key in self.keys}
        order, end = self._order, self._end
        fired: list[int] = []
        with _lock:
            sid = self._sid
            fact["sid"] = sid
            fact[ALWAYS] = 1
            encoded = encode_fact(fact)
            code, state = durable_rules_engine.assert_fact(handle, encoded)
            if code != _HANDLED:  # cannot happen: ALWAYS matches and the session holds no fact
                self._sid = str(next(_sids))  # whatever is left in that session, start afresh
                raise RuntimeError(f"durable_rules did not handle the fact in {self.label} (code {code})")
            done = False
            try:
                action = durable_rules_engine.start_action_for_state(handle, state)
                message: str | None = action[1] if action else None
                while message:
                    index = order.get(message[2:end])
                    fired.append(self._index_of(message) if index is None else index)
                    message = durable_rules_engine.complete_and_start_action(handle, state)
                done = True
            finally:
                if done:
                    # Every action taken: the session is as before once the fact is retracted,
                    # and is used again (cheaper than deleting it and making a new one).
                    durable_rules_engine.retract_fact(handle, encoded)
                else:
                    # Actions may be left pending: drop the session (ALWAYS matched, so deleting
                    # is safe) and use a new one from now on.
                    durable_rules_engine.delete_state(handle, sid)
                    self._sid = str(next(_sids))
        fired.sort()
        if not fired or fired[-1] != self._always:
            raise RuntimeError(f"durable_rules matched nothing in {self.label}, not even {ALWAYS}")
        names = self._names
        return [names[index] for index in dict.fromkeys(fired[:-1])]

    def _index_of(self, message: str) -> int:
        """The rule of an action message whose name the fast path did not read."""
        return self._order[str(next(iter(json.loads(message))))]


_compiled: weakref.WeakKeyDictionary[ConditionGroup, CompiledGroup] = weakref.WeakKeyDictionary()


def compiled(group: ConditionGroup) -> CompiledGroup:
    """The group's durable_rules ruleset, compiled on first use and kept as long as the group."""
    with _lock:
        found = _compiled.get(group)
        if found is None:
            found = _compiled[group] = CompiledGroup(group.label, group.rules)
        return found


_text = json.JSONEncoder(ensure_ascii=False).encode
# In orjson's output: a number with an exponent (or a digit then e/E in a key or a string, which
# only costs the slower path).
_EXPONENT = re.compile(rb"[0-9][eE]")
_INT64 = 2**63


def encode_fact(fact: dict[str, Any]) -> str:
    """The fact as JSON durable_rules reads, by orjson (a tenth of json.dumps' time on a user's
    facts) when it wrote nothing durable_rules refuses: otherwise (a float with an exponent, a
    float that is not finite, which orjson writes as null, an int past 64 bits, which it refuses)
    by `durable_json`. No fact is ever None, so null only comes from such a float, or a string."""
    try:
        encoded = orjson.dumps(fact)
    except TypeError:
        return durable_json(fact)
    if b"null" in encoded or _EXPONENT.search(encoded):
        return durable_json(fact)
    return encoded.decode()


def durable_json(value: Any, key: str = "") -> str:
    """`value` as JSON, each float written as durable_rules reads it (a decimal point before any
    exponent); UnreadableFact (naming the top-level `key` it is under) for a float that is not
    finite or an int past 64 bits."""
    if isinstance(value, dict):
        parts = (f"{_text(str(k))}:{durable_json(v, key or str(k))}" for k, v in value.items())
        return "{" + ",".join(parts) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(durable_json(v, key) for v in value) + "]"
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return _text(value)
    if isinstance(value, int):
        if not -_INT64 <= value < _INT64:
            raise UnreadableFact(key)
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise UnreadableFact(key)
        text = repr(value)
        mantissa, exponent, power = text.partition("e")
        return f"{mantissa}.0e{power}" if exponent and "." not in mantissa else text
    raise TypeError(f"fact {key}: {type(value).__name__} is not a JSON value")
