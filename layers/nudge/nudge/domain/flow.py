"""Flows: a directed graph of steps with a count on each node and edge, as plain values.

The report draws each as a picture (nudge.tools.report.flow). Anything that moves users through
steps can give one: today each trigger's funnel (`trigger_flow`: eligible -> sent / held out / not
sent -> converted); a journey's steps, variants and paths are the same shape (a node per step, an
edge per way out of it, counted in users).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from nudge.domain.lift import exposures, reached
from nudge.model.ledger import LedgerEntry
from nudge.model.state import AccountState, UserState
from nudge.rulebook.ruleset import RuleSet


@dataclass(frozen=True)
class FlowNode:
    id: str
    label: str
    count: int
    note: str = ""  # a second line under the count, e.g. "12 still in their window"


@dataclass(frozen=True)
class FlowEdge:
    source: str  # a node id
    target: str  # a node id
    count: int


@dataclass(frozen=True)
class Flow:
    id: str
    title: str
    nodes: tuple[FlowNode, ...]
    edges: tuple[FlowEdge, ...] = field(default=())

    def problems(self) -> list[str]:
        """What makes the graph unusable: duplicate node ids, edges naming unknown nodes."""
        ids = [n.id for n in self.nodes]
        found = [f"node {i!r} appears twice" for i in sorted({i for i in ids if ids.count(i) > 1})]
        known = set(ids)
        for edge in self.edges:
            for end in (edge.source, edge.target):
                if end not in known:
                    found.append(f"edge {edge.source} -> {edge.target}: no node {end!r}")
        return found


def trigger_flow(
    rules: RuleSet,
    rule: str,
    entries: Iterable[LedgerEntry],
    users: Mapping[str, UserState],
    accounts: Mapping[str, AccountState],
    now: datetime,
) -> Flow:
    """One trigger's funnel, in users: who had a decision of it (eligible), whose first exposure
    was a send or a hold-out (as lift counts them), who never got either (every decision
    suppressed, deferred or cancelled), and, for a rule with a goal, who converted within the
    goal's window (windows still open are left out, and noted)."""
    trigger = rules.trigger_by_id[rule]
    mine = [e for e in entries if e.decision.rule == rule and e.decision.action != "escalate"]
    eligible = {e.decision.user for e in mine if e.decision.user in users}
    first = {x.user_id: x for x in exposures(mine).get(rule, []) if x.user_id in eligible}
    sent = [x for x in first.values() if x.treated]
    held = [x for x in first.values() if not x.treated]
    nodes = [
        FlowNode("eligible", "eligible", len(eligible)),
        FlowNode("sent", "sent", len(sent)),
        FlowNode("held_out", "held out", len(held)),
        FlowNode("not_sent", "not sent", len(eligible) - len(first)),
    ]
    edges = [
        FlowEdge("eligible", "sent", len(sent)),
        FlowEdge("eligible", "held_out", len(held)),
        FlowEdge("eligible", "not_sent", len(eligible) - len(first)),
    ]
    goal = trigger.spec.goal
    if goal is not None:
        for group, members, label in (
            ("sent", sent, "converted"),
            ("held_out", held, "converted (held out)"),
        ):
            closed = [x for x in members if x.at + goal.within <= now]
            hits = sum(
                reached(
                    goal,
                    users[x.user_id],
                    accounts.get(x.account_id) if x.account_id else None,
                    x.at,
                    rules.plan.meaningful,
                )
                for x in closed
            )
            waiting = len(members) - len(closed)
            note = f"of {len(closed)}; {waiting} in window" if waiting else f"of {len(closed)}"
            nodes.append(FlowNode(f"{group}_converted", label, hits, note))
            edges.append(FlowEdge(group, f"{group}_converted", hits))
    return Flow(rule, f"{rule}: {trigger.spec.kind} by {trigger.spec.action}", tuple(nodes), tuple(edges))


def trigger_flows(
    rules: RuleSet,
    entries: Iterable[LedgerEntry],
    users: Mapping[str, UserState],
    accounts: Mapping[str, AccountState],
    now: datetime,
) -> list[Flow]:
    """Each user-facing trigger that decided anything, in triggers.yaml order."""
    kept = list(entries)
    decided = {e.decision.rule for e in kept if e.decision.action != "escalate"}
    return [
        trigger_flow(rules, t.id, kept, users, accounts, now)
        for t in rules.triggers
        if t.id in decided and t.spec.action != "escalate"
    ]
