"""Agent runs laid out for charts: an icicle of each call tree, and fan-out counts.

The dashboard draws these as they are; the widths are each call's share of its run's cost,
exact, so the chart never does arithmetic on money.
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


def fan_out_counts(runs: list[Run]) -> list[tuple[int, int]]:
    """(fan-out, number of runs with it), smallest fan-out first."""
    counts: dict[int, int] = {}
    for r in runs:
        counts[r.fan_out] = counts.get(r.fan_out, 0) + 1
    return sorted(counts.items())


__all__ = ["IcicleCell", "fan_out_counts", "icicle", "label"]
