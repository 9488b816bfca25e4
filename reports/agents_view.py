"""Agent runs laid out for the dashboard: each run's calls as rows of an indented tree, an
icicle of it, and fan-out counts.

The dashboard draws these as they are; shares and widths are exact fractions of the run's
cost, so the page never does arithmetic on money.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from meterline.costing import ZERO

from .agents import CallNode, Run


@dataclass
class IcicleCell:
    """One call as a rectangle: `depth` levels below the run, spanning [x0, x1) of it."""

    call_id: str
    parent_call_id: str
    depth: int
    x0: Decimal  # 0..1
    x1: Decimal
    label: str
    kind: str
    status: str
    cost_usd: Decimal  # its own
    total_usd: Decimal  # with everything below it


def label(node: CallNode) -> str:
    if node.is_tool_call:
        return f"tool {node.tool}"
    if node.kind == "mcp":
        return f"mcp {node.method}"
    return f"{node.kind} {node.model}"


def icicle(run: Run) -> list[IcicleCell]:
    """The run's calls as icicle cells: the run itself at depth 0, its calls below; a call's
    width is its share of the run's total cost (of the call count when the run cost nothing)."""
    by_cost = run.cost_usd > 0

    def size(n: CallNode) -> Decimal:
        return n.total_usd if by_cost else Decimal(sum(1 for _ in n.walk()))

    whole = sum((size(r) for r in run.roots), ZERO) or Decimal(1)
    cells = [IcicleCell(run.trace_id, "", 0, ZERO, Decimal(1), "agent run", "run", "ok", ZERO, run.cost_usd)]

    def place(nodes: list[CallNode], parent: str, depth: int, x: Decimal) -> None:
        for n in nodes:
            width = size(n) / whole
            cells.append(IcicleCell(n.call_id, parent, depth, x, x + width, label(n), n.kind, n.status, n.cost_usd, n.total_usd))
            place(n.children, n.call_id, depth + 1, x)
            x += width

    place(run.roots, run.trace_id, 1, ZERO)
    return cells


@dataclass
class TreeRow:
    """One call of a run, in depth-first order: `prefix` draws the tree before its label
    (`├─ `, `└─ `, `│  `), so every call shows under the call that made it."""

    n: int  # 1.. in tree order
    call_id: str
    parent_call_id: str
    depth: int  # 0: a root (made by the agent itself)
    prefix: str
    label: str  # "llm gpt-4o", "tool docs/search", "mcp tools/list"
    kind: str
    link: str  # how it joined the run (CallNode.how_linked): root, traceparent, ...
    spawned_by: str  # the label of the call that made it ("agent" for a root)
    status: str
    team: str  # charged
    key_team: str
    cost_usd: Decimal  # its own
    total_usd: Decimal  # with everything below it
    share: Decimal  # total_usd / the run's cost, 0..1 (0 when the run cost nothing)
    below: int  # calls made on its behalf, at any depth

    @property
    def tree_label(self) -> str:
        return self.prefix + self.label


def long_label(node: CallNode) -> str:
    """`label`, with the server for a tool call: two servers may have a tool of one name."""
    return f"tool {node.provider}/{node.tool}" if node.is_tool_call else label(node)


def tree_rows(run: Run) -> list[TreeRow]:
    """Every call of the run, each under the call that made it, depth-first in time order."""
    rows: list[TreeRow] = []

    def add(nodes: list[CallNode], parent: CallNode | None, lead: str, depth: int) -> None:
        for i, node in enumerate(nodes):
            last = i == len(nodes) - 1
            prefix = "" if depth == 0 else lead + ("└─ " if last else "├─ ")
            share = node.total_usd / run.cost_usd if run.cost_usd else ZERO
            rows.append(TreeRow(
                len(rows) + 1, node.call_id, parent.call_id if parent else "", depth, prefix, long_label(node),
                node.kind, node.how_linked, long_label(parent) if parent else "agent", node.status, node.team,
                node.key_team, node.cost_usd, node.total_usd, share, sum(1 for _ in node.walk()) - 1,
            ))  # fmt: skip
            below = "" if depth == 0 else lead + ("   " if last else "│  ")
            add(node.children, node, below, depth + 1)

    add(run.roots, None, "", 0)
    return rows


def link_summary(run: Run) -> str:
    """How the run's calls joined it, as a reader scans it: "root 1, continuation 2, ..."."""
    return ", ".join(f"{k} {v}" for k, v in run.links.items())


def fan_out_counts(runs: list[Run]) -> list[tuple[int, int]]:
    """(fan-out, number of runs with it), smallest fan-out first."""
    counts: dict[int, int] = {}
    for r in runs:
        counts[r.fan_out] = counts.get(r.fan_out, 0) + 1
    return sorted(counts.items())


__all__ = ["IcicleCell", "TreeRow", "fan_out_counts", "icicle", "label", "link_summary", "long_label", "tree_rows"]
