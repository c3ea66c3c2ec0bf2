"""A flow drawn as SVG: nodes (steps, with their counts) in columns by depth, left to right, and an
edge for each way between them, as thick as its count and labelled with it. No script: tooltips
are SVG <title> elements.

Depth is the longest path from a node without incoming edges, over the edges that do not close a
cycle (a journey may loop back to an earlier step after a wait); an edge that does is drawn as a
dashed arc under the nodes, back to its target.
"""

from __future__ import annotations

from collections.abc import Sequence

from nudge.domain.flow import Flow, FlowEdge, FlowNode
from nudge.tools.report.charts import GREY, WIDTH, clip, coord, svg_text
from nudge.tools.report.markup import esc, num

NODE_W, NODE_H = 150, 52
GAP_X, GAP_Y = 80, 22
PAD = 14
MAX_STROKE = 14.0
NODE_FILL, NODE_LINE, EDGE_COLOR = "#eef4fb", "#0072B2", "#56B4E9"


def depths(nodes: Sequence[FlowNode], edges: Sequence[FlowEdge]) -> tuple[dict[str, int], list[FlowEdge]]:
    """Each node's column, and the edges that close a cycle (drawn back, not counted for depth)."""
    ids = [n.id for n in nodes]
    out: dict[str, list[str]] = {i: [] for i in ids}
    has_in = {e.target for e in edges if e.source != e.target}
    for edge in edges:
        out[edge.source].append(edge.target)
    # Depth-first from the roots (then from anything left, for a graph that is all cycle): an edge
    # to a node still on the path closes a cycle.
    state: dict[str, int] = {}  # 1 on the path, 2 done
    back: set[tuple[str, str]] = set()
    order: list[str] = []  # reverse post-order: a topological order of the forward edges
    for start in [i for i in ids if i not in has_in] + ids:
        if start in state:
            continue
        stack: list[tuple[str, int]] = [(start, 0)]
        state[start] = 1
        while stack:
            node, index = stack[-1]
            if index < len(out[node]):
                stack[-1] = (node, index + 1)
                target = out[node][index]
                if state.get(target) == 1:
                    back.add((node, target))
                elif target not in state:
                    state[target] = 1
                    stack.append((target, 0))
                continue
            stack.pop()
            state[node] = 2
            order.append(node)
    depth = dict.fromkeys(ids, 0)
    for node in reversed(order):
        for target in out[node]:
            if (node, target) not in back:
                depth[target] = max(depth[target], depth[node] + 1)
    return depth, [e for e in edges if (e.source, e.target) in back]


def flow_svg(flow: Flow) -> str:
    """The flow as one <svg>; ValueError naming the problem when the graph does not hold together."""
    problems = flow.problems()
    if problems:
        raise ValueError(f"flow {flow.id}: " + "; ".join(problems))
    if not flow.nodes:
        raise ValueError(f"flow {flow.id}: no nodes to draw")
    depth, back = depths(flow.nodes, flow.edges)
    columns: dict[int, list[FlowNode]] = {}
    for node in flow.nodes:
        columns.setdefault(depth[node.id], []).append(node)
    place: dict[str, tuple[float, float]] = {}
    for column, members in columns.items():
        for row, node in enumerate(members):
            place[node.id] = (PAD + column * (NODE_W + GAP_X), PAD + row * (NODE_H + GAP_Y))
    rows = max(len(m) for m in columns.values())
    bottom = PAD + rows * (NODE_H + GAP_Y) - GAP_Y
    height = bottom + PAD + (28 if back else 0)
    width = max(WIDTH, PAD * 2 + (max(columns) + 1) * (NODE_W + GAP_X) - GAP_X)
    top = max([e.count for e in flow.edges] + [1])

    out: list[str] = []
    for edge in flow.edges:
        out.append(_edge(edge, place, top, bottom, edge in back))
    for node in flow.nodes:
        out.append(_node(node, *place[node.id]))
    label = f"{flow.title}: " + ", ".join(f"{n.label} {n.count}" for n in flow.nodes)
    return (
        f'<svg class="chart flow" viewBox="0 0 {width} {coord(height)}" role="img" '
        f'aria-label="{esc(label)}" data-flow="{esc(flow.id)}">{"".join(out)}</svg>'
    )


def _node(node: FlowNode, x: float, y: float) -> str:
    tip = f"{node.label}: {node.count:,} users" + (f" ({node.note})" if node.note else "")
    parts = [
        f'<g class="node" data-node="{esc(node.id)}"><title>{esc(tip)}</title>',
        f'<rect x="{coord(x)}" y="{coord(y)}" width="{NODE_W}" height="{NODE_H}" rx="6" '
        f'fill="{NODE_FILL}" stroke="{NODE_LINE}"/>',
        svg_text(x + NODE_W / 2, y + 18, clip(node.label, 22), "middle"),
        svg_text(x + NODE_W / 2, y + 36, num(node.count), "middle", "count"),
    ]
    if node.note:
        parts.append(svg_text(x + NODE_W / 2, y + 48, clip(node.note, 26), "middle", "axis"))
    return "".join(parts) + "</g>"


def _edge(
    edge: FlowEdge, place: dict[str, tuple[float, float]], top: int, bottom: float, is_back: bool
) -> str:
    (sx, sy), (tx, ty) = place[edge.source], place[edge.target]
    stroke = 1.5 + (MAX_STROKE - 1.5) * max(edge.count, 0) / top
    tip = f"{edge.source} -> {edge.target}: {edge.count:,} users"
    if is_back:
        # Under every node, from the source's bottom back to the target's.
        x1, x2, low = sx + NODE_W / 2, tx + NODE_W / 2, bottom + 22
        path = (
            f"M{coord(x1)},{coord(sy + NODE_H)} C{coord(x1)},{coord(low)} "
            f"{coord(x2)},{coord(low)} {coord(x2)},{coord(ty + NODE_H)}"
        )
        mx, my, dash = (x1 + x2) / 2, low - 2, ' stroke-dasharray="5 4"'
    else:
        x1, y1, x2, y2 = sx + NODE_W, sy + NODE_H / 2, tx, ty + NODE_H / 2
        mid = (x1 + x2) / 2
        path = (
            f"M{coord(x1)},{coord(y1)} C{coord(mid)},{coord(y1)} {coord(mid)},{coord(y2)} "
            f"{coord(x2)},{coord(y2)}"
        )
        mx, my, dash = mid, (y1 + y2) / 2 - 4, ""
        if x2 - x1 > GAP_X:
            # Past other columns, the middle may lie under a node: label it just before its target.
            mx, my = x2 - GAP_X / 2, y2 - 4
    return (
        f'<g class="edge" data-edge="{esc(edge.source)}>{esc(edge.target)}"><title>{esc(tip)}</title>'
        f'<path d="{path}" fill="none" stroke="{EDGE_COLOR}" stroke-opacity="0.7" '
        f'stroke-width="{coord(stroke)}"{dash}/>'
        + svg_text(mx, my, num(edge.count), "middle", "edge-count")
        + "</g>"
    )


def flow_legend() -> str:
    return (
        f'<p class="note" style="color:{GREY}">Users at each step; an edge is as thick as the users '
        "who took it, and a dashed edge goes back to an earlier step.</p>"
    )
