"""Tool, tool-call and agent-run costs from call trees in a seeded ledger, and their commands."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import yaml

from meterline.costing import create_engine, create_schema
from meterline.reports.agents import call_tree, tool_costs, top_runs, top_tool_calls
from tests.conftest import base_config, run_cli
from tests.seed import event, seed

T0 = datetime(2026, 11, 10, 12, 0, tzinfo=UTC)
RUN, SMALL, SINGLE = "a" * 32, "b" * 32, "c" * 32
AGENT = "f" * 16  # a client's own span, not a call in the ledger


def tool(cost, call_id, name, parent="", trace=RUN, **kw):
    return event(cost, T0 + timedelta(seconds=len(call_id)), call_id=call_id, kind="mcp", method="tools/call",
                 tool=name, provider="sim", model="", trace_id=trace, parent_call_id=parent, **kw)  # fmt: skip


def llm(cost, call_id, parent="", trace=RUN, **kw):
    return event(cost, T0 + timedelta(seconds=len(call_id)), call_id=call_id, trace_id=trace, parent_call_id=parent, **kw)


@pytest.fixture
def engine(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    create_schema(engine)
    # The agent (team nlp) calls an LLM and the summarize tool; summarize calls the LLM twice
    # with team web's key and calls the echo tool, which calls the LLM once more.
    seed(engine, [
        llm("0.05", "r1"),
        tool("0.002", "t1", "summarize"),
        llm("0.01", "l1", parent="t1", key_team="web"),
        llm("0.01", "l2", parent="t1", key_team="web"),
        tool("0.001", "t2", "echo", parent="t1", key_team="web"),
        llm("0.02", "l3", parent="t2", key_team="web"),
        # Two calls share a trace when the client sends one traceparent (its own span the parent).
        llm("0.001", "s1", trace=SMALL, parent_span_id=AGENT), llm("0.001", "s2", trace=SMALL, parent_span_id=AGENT),
        llm("1.00", "x1", trace=SINGLE),  # one call is not a run, however costly
        tool("0.001", "t3", "echo", trace=""),  # no trace context at all
        event("0.001", T0, kind="mcp", method="tools/list", provider="sim", model="", trace_id=RUN),
    ])  # fmt: skip
    return engine


def test_tool_costs_add_sub_call_trees_to_own_cost(engine):
    rows = {(r.server, r.tool): r for r in tool_costs(engine, "2026-11")}
    s = rows[("sim", "summarize")]
    assert (s.calls, s.subcalls, s.own_usd, s.subcall_usd, s.total_usd) == (
        1, 4, Decimal("0.002"), Decimal("0.041"), Decimal("0.043"),
    )  # fmt: skip
    e = rows[("sim", "echo")]
    assert (e.calls, e.subcalls, e.own_usd, e.subcall_usd) == (2, 1, Decimal("0.002"), Decimal("0.02"))
    assert list(rows) == [("sim", "summarize"), ("sim", "echo")]  # by total cost


def test_a_tool_call_comes_with_its_tree(engine):
    node = call_tree(engine, "t1")
    assert node is not None and node.total_usd == Decimal("0.043")
    assert sorted(c.call_id for c in node.children) == ["l1", "l2", "t2"]
    assert [c.call_id for c in next(c for c in node.children if c.call_id == "t2").children] == ["l3"]
    assert call_tree(engine, "missing") is None
    (top,) = top_tool_calls(engine, "2026-11", top=1)
    assert top.call_id == "t1"


def test_runs_are_traces_of_several_calls_ranked_by_cost_with_depth_and_fan_out(engine):
    runs = top_runs(engine, "2026-11", top=5)
    assert [r.trace_id for r in runs] == [RUN, SMALL]
    run = runs[0]
    assert run.cost_usd == Decimal("0.094")  # tools/list included
    assert (run.calls, run.tool_calls, run.llm_calls) == (7, 2, 4)
    assert run.depth == 3  # agent -> summarize -> echo -> LLM
    assert run.fan_out == 3  # summarize made three calls; the agent made three too (r1, t1, tools/list)
    assert run.teams == ["nlp", "web"]
    assert [r.trace_id for r in top_runs(engine, "2026-11", top=1)] == [RUN]


def test_report_commands_print_tables_and_json(engine, tmp_path, upstream):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(base_config(tmp_path, upstream.url)))
    tools = json.loads(run_cli("report", "tools", "--month", "2026-11", "--json", "--config", str(cfg)).stdout)
    assert tools[0]["tool"] == "summarize" and tools[0]["total_usd"] == "0.043000"
    runs = json.loads(run_cli("report", "runs", "--month", "2026-11", "--top", "1", "--json", "--config", str(cfg)).stdout)
    assert [r["trace_id"] for r in runs] == [RUN] and runs[0]["depth"] == 3
    assert {"r1", "t1"} <= {node["call_id"] for node in runs[0]["tree"]}
    text = run_cli("report", "runs", "--month", "2026-11", "--config", str(cfg)).stdout
    assert RUN in text and "FAN-OUT" in text
    assert "summarize" in run_cli("report", "tools", "--month", "2026-11", "--config", str(cfg)).stdout


def test_report_call_prints_one_tree_or_fails_in_one_line(engine, tmp_path, upstream):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(base_config(tmp_path, upstream.url)))
    tree, run = run_cli("report", "call", "t1", "--config", str(cfg)).stdout.split("\n\n")
    assert [line.split()[0] for line in tree.splitlines()] == ["t1", "l1", "l2", "t2", "l3"]
    assert run.startswith(f"Run {RUN}: 7 calls, 0.094000 USD, paid by research/nlp")
    assert json.loads(run_cli("report", "call", "t2", "--json", "--config", str(cfg)).stdout)["total_usd"] == "0.021000"
    missing = run_cli("report", "call", "nope", "--config", str(cfg), check=False)
    assert missing.returncode == 1 and len(missing.stderr.strip().splitlines()) == 1
