"""Icicle cells and fan-out counts: exact shares of a run's cost, no arithmetic left to charts."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from meterline.reports.agents import CallNode, run_of
from meterline.reports.agents_view import fan_out_counts, icicle, tree_rows

T = datetime(2026, 11, 10, tzinfo=UTC)


def node(call_id: str, cost: str, kind: str = "llm", children: list[CallNode] | None = None) -> CallNode:
    return CallNode(call_id, "t" * 32, T, kind, "tools/call" if kind == "mcp" else "/chat/completions", "sim",
                    "gpt-4o-mini" if kind == "llm" else "", "summarize" if kind == "mcp" else "", "ok", "nlp", "nlp",
                    Decimal(cost), children or [])  # fmt: skip


def test_icicle_widths_are_each_calls_share_of_the_runs_cost():
    tool = node("t1", "0.01", "mcp", [node("l1", "0.03"), node("l2", "0.02")])
    run = run_of("t" * 32, [node("r1", "0.04"), tool])
    cells = {c.call_id: c for c in icicle(run)}
    assert (cells["t" * 32].depth, cells["t" * 32].x0, cells["t" * 32].x1) == (0, 0, 1)
    assert (cells["r1"].x0, cells["r1"].x1) == (0, Decimal("0.4"))
    assert (cells["t1"].x0, cells["t1"].x1, cells["t1"].label) == (Decimal("0.4"), Decimal("1"), "tool summarize")
    assert (cells["l1"].depth, cells["l1"].x0, cells["l1"].x1) == (2, Decimal("0.4"), Decimal("0.7"))
    assert (cells["l2"].x0, cells["l2"].x1) == (Decimal("0.7"), Decimal("0.9"))


def test_a_run_that_cost_nothing_is_drawn_by_call_count():
    run = run_of("t" * 32, [node("a", "0"), node("b", "0", "mcp", [node("c", "0")])])
    cells = {c.call_id: c for c in icicle(run)}
    assert (cells["a"].x1, cells["b"].x0, cells["b"].x1) == (Decimal(1) / 3, Decimal(1) / 3, Decimal(1))


def test_fan_out_counts_runs_per_fan_out():
    runs = [run_of("x", [node("a", "1"), node("b", "1")]), run_of("y", [node("c", "1")]), run_of("z", [node("d", "1")])]
    assert fan_out_counts(runs) == [(1, 2), (2, 1)]


def test_tree_rows_put_every_call_under_the_one_that_made_it_with_exact_shares():
    tool = node("t1", "0.01", "mcp", [node("l1", "0.03"), node("l2", "0.02", children=[node("l3", "0.01")])])
    run = run_of("t" * 32, [node("r1", "0.03"), tool])
    rows = tree_rows(run)
    assert [r.call_id for r in rows] == ["r1", "t1", "l1", "l2", "l3"]
    assert [r.tree_label for r in rows] == [
        "llm gpt-4o-mini", "tool sim/summarize", "├─ llm gpt-4o-mini", "└─ llm gpt-4o-mini", "   └─ llm gpt-4o-mini",
    ]  # fmt: skip
    assert [r.spawned_by for r in rows] == ["agent", "agent", "tool sim/summarize", "tool sim/summarize", "llm gpt-4o-mini"]
    assert [r.share for r in rows] == [Decimal("0.3"), Decimal("0.7"), Decimal("0.3"), Decimal("0.3"), Decimal("0.1")]
    assert [r.below for r in rows] == [0, 3, 0, 1, 0] and rows[1].total_usd == Decimal("0.07")
    assert tree_rows(run_of("x", [node("a", "0")]))[0].share == 0
