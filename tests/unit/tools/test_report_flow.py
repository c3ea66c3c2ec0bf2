"""The flow drawing: any graph of steps with counts, laid out left to right by depth, as SVG with no
script; cycles drawn back, bad graphs refused by name; and each trigger's funnel built from the
ledger and shown in the report."""

from __future__ import annotations

import dataclasses
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import pytest

from nudge.domain.flow import Flow, FlowEdge, FlowNode, trigger_flow, trigger_flows
from nudge.domain.report_model import ReportData
from nudge.model.decisions import Decision
from nudge.model.ledger import LedgerEntry
from nudge.model.state import EventStats, UserState
from nudge.rulebook.loader import load_rules
from nudge.tools.report.flow import depths, flow_svg
from nudge.tools.report.html import render
from tests.shipped import ONE_SHOT_DIR

SVG = "{http://www.w3.org/2000/svg}"
RULES = load_rules(ONE_SHOT_DIR)
T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def parse(svg: str) -> ET.Element:
    # The report inlines SVG in HTML without a namespace; parse it as XML with one.
    return ET.fromstring(svg.replace("<svg ", f'<svg xmlns="{SVG[1:-1]}" ', 1))  # noqa: S314 - our own output


def nodes_at(root: ET.Element) -> dict[str, tuple[float, float]]:
    found = {}
    for group in root.iter(f"{SVG}g"):
        if group.get("class") == "node":
            rect = group.find(f"{SVG}rect")
            assert rect is not None
            found[str(group.get("data-node"))] = (float(rect.get("x", "0")), float(rect.get("y", "0")))
    return found


def edge_widths(root: ET.Element) -> dict[str, float]:
    found = {}
    for group in root.iter(f"{SVG}g"):
        if group.get("class") == "edge":
            path = group.find(f"{SVG}path")
            assert path is not None
            found[str(group.get("data-edge"))] = float(path.get("stroke-width", "0"))
    return found


JOURNEY = Flow(
    "rescue",
    "rescue",
    (
        FlowNode("entered", "entered", 200),
        FlowNode("reminder", "quick-win reminder", 180),
        FlowNode("wait", "wait 3 days", 180),
        FlowNode("survey", "survey", 90),
        FlowNode("cs", "customer success", 12),
        FlowNode("converted", "converted", 70, "of 180"),
    ),
    (
        FlowEdge("entered", "reminder", 180),
        FlowEdge("reminder", "wait", 180),
        FlowEdge("wait", "survey", 90),
        FlowEdge("wait", "converted", 60),
        FlowEdge("survey", "cs", 12),
        FlowEdge("survey", "converted", 10),
    ),
)


def test_nodes_stand_in_columns_by_depth_left_to_right() -> None:
    root = parse(flow_svg(JOURNEY))
    at = nodes_at(root)
    assert set(at) == {n.id for n in JOURNEY.nodes}
    x = {node: position[0] for node, position in at.items()}
    assert x["entered"] < x["reminder"] < x["wait"] < x["survey"] < x["cs"]
    # converted is reached at depth 3 (from wait) and 4 (from survey): the longest path places it
    assert x["converted"] == x["cs"]
    assert at["converted"][1] != at["cs"][1]  # one above the other


def test_every_count_is_written_and_edges_are_as_thick_as_their_count() -> None:
    svg = flow_svg(JOURNEY)
    texts = [t.text for t in parse(svg).iter(f"{SVG}text")]
    for count in ("200", "180", "90", "12", "70", "60", "10"):
        assert count in texts
    assert "of 180" in texts
    widths = edge_widths(parse(svg))
    assert widths["entered>reminder"] > widths["wait>survey"]
    assert widths["wait>survey"] > widths["survey>cs"]
    # No script, no external reference: tooltips are SVG titles
    assert "<script" not in svg
    assert "href" not in svg
    assert len(list(parse(svg).iter(f"{SVG}title"))) == len(JOURNEY.nodes) + len(JOURNEY.edges)


def test_a_loop_back_to_an_earlier_step_is_drawn_back_and_does_not_move_columns() -> None:
    looped = dataclasses.replace(JOURNEY, edges=(*JOURNEY.edges, FlowEdge("survey", "reminder", 5)))
    depth, back = depths(looped.nodes, looped.edges)
    assert back == [FlowEdge("survey", "reminder", 5)]
    assert depth == depths(JOURNEY.nodes, JOURNEY.edges)[0]
    svg = flow_svg(looped)
    assert 'stroke-dasharray="5 4"' in svg
    # A graph that is nothing but a cycle still draws
    ring = Flow(
        "ring",
        "ring",
        (FlowNode("a", "a", 1), FlowNode("b", "b", 1)),
        (FlowEdge("a", "b", 1), FlowEdge("b", "a", 1)),
    )
    assert set(nodes_at(parse(flow_svg(ring)))) == {"a", "b"}


def test_labels_are_escaped() -> None:
    evil = Flow("x", "<b>x</b>", (FlowNode("a", "<script>alert(1)</script>", 3),))
    svg = flow_svg(evil)
    assert "<script" not in svg
    assert "&lt;script&gt;" in svg
    parse(svg)


def test_a_graph_that_does_not_hold_together_is_refused_by_name() -> None:
    bad = Flow("j", "j", (FlowNode("a", "a", 1), FlowNode("a", "a", 2)), (FlowEdge("a", "zz", 1),))
    with pytest.raises(ValueError, match=r"flow j: node 'a' appears twice; edge a -> zz: no node 'zz'"):
        flow_svg(bad)
    with pytest.raises(ValueError, match="no nodes"):
        flow_svg(Flow("empty", "empty", ()))


def test_a_wide_flow_widens_the_drawing_instead_of_overlapping() -> None:
    chain = Flow(
        "long",
        "long",
        tuple(FlowNode(f"s{i}", f"step {i}", 10 - i) for i in range(8)),
        tuple(FlowEdge(f"s{i}", f"s{i + 1}", 9 - i) for i in range(7)),
    )
    svg = flow_svg(chain)
    width = float(re.search(r'viewBox="0 0 ([\d.]+) ', svg).group(1))  # type: ignore[union-attr]
    assert max(x for x, _ in nodes_at(parse(svg)).values()) + 150 <= width


# ------------------------------------------------------------------------------ a trigger's funnel


def entry(user: str, rule: str, at: datetime, outcome: str = "send", status: str = "sent") -> LedgerEntry:
    decision = Decision(
        decision_id=f"{rule}-{user}-{at.timestamp()}",
        user=user,
        account=None,
        rule=rule,
        kind="onboarding",
        action="email",
        channel="email",
        template="t",
        priority=50,
        reason="",
        facts={},
        decided_at=at,
    )
    return LedgerEntry(decision=decision, outcome=outcome, status=status, recorded_at=at, updated_at=at)


def user(user_id: str, setup: datetime | None = None) -> UserState:
    events = {}
    if setup is not None:
        events["setup_completed"] = EventStats(
            count=1, first=setup, last=setup, daily={setup.date().toordinal(): 1}
        )
    return UserState(user_id=user_id, events=events)


def test_a_trigger_funnel_counts_users_from_eligible_to_converted() -> None:
    # Given finish_setup (goal: setup_completed within 7 days) decided for 6 users: 3 emailed (2 set
    # up in time), 2 held out (1 set up), 1 only ever suppressed; and one emailed yesterday
    entries = [
        entry("a", "finish_setup", T0),
        entry("a", "finish_setup", T0 + 3 * DAY),  # a second reminder: still one user
        entry("b", "finish_setup", T0),
        entry("c", "finish_setup", T0),
        entry("d", "finish_setup", T0, "held_out", ""),
        entry("e", "finish_setup", T0, "held_out", ""),
        entry("f", "finish_setup", T0, "suppressed", ""),
        entry("g", "finish_setup", T0 + 29 * DAY),
    ]
    users = {
        "a": user("a", T0 + DAY),
        "b": user("b", T0 + 2 * DAY),
        "c": user("c"),
        "d": user("d", T0 + DAY),
        "e": user("e"),
        "f": user("f"),
        "g": user("g"),
    }
    flow = trigger_flow(RULES, "finish_setup", entries, users, {}, T0 + 30 * DAY)
    counts = {n.id: n.count for n in flow.nodes}
    assert counts == {
        "eligible": 7,
        "sent": 4,
        "held_out": 2,
        "not_sent": 1,
        "sent_converted": 2,
        "held_out_converted": 1,
    }
    notes = {n.id: n.note for n in flow.nodes}
    assert notes["sent_converted"] == "of 3; 1 in window"
    assert {(e.source, e.target): e.count for e in flow.edges}[("eligible", "not_sent")] == 1
    assert flow.problems() == []
    # Each trigger that decided anything gets one, in triggers.yaml order
    assert [f.id for f in trigger_flows(RULES, entries, users, {}, T0 + 30 * DAY)] == ["finish_setup"]


def test_the_report_draws_each_rule_flow() -> None:
    data = ReportData(
        generated_at=T0,
        source="",
        users=0,
        accounts=0,
        segments=[],
        weekly_sizes=[],
        flows={},
        funnel=[],
        messages=[],
        escalations=[],
        features=[],
        adoption={},
        lift=[],
        quality=[],
        retained_overall=None,
        rule_flows=[JOURNEY, dataclasses.replace(JOURNEY, id="other", title="other")],
    )
    page = render(data)
    flows = page.split('id="flows"')[1].split("</section>")[0]
    assert flows.count("<svg") == 2
    assert 'data-flow="rescue"' in flows
    assert 'data-flow="other"' in flows
    empty = render(dataclasses.replace(data, rule_flows=[]))
    assert "no rule has decided anything" in empty.split('id="flows"')[1].split("</section>")[0]
