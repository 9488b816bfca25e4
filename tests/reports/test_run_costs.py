"""A run's cost over its whole tree, whichever way its calls were linked (issue 14): the total is
the sum of its events to the pico-dollar, split by model, tool and team charged; its payer,
depth, fan-out, duration and links. `meterline report runs|call` print the same numbers."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa
import yaml

from meterline.costing import ZERO, create_engine, create_schema, from_pico
from meterline.costing.tables import EVENTS
from meterline.reports.agents import run_detail, top_runs
from tests.conftest import base_config, run_cli
from tests.seed import agent_runs, event, seed

T0 = datetime(2026, 11, 10, 9, 0, tzinfo=UTC)
RESEARCH, SUPPORT, TRACED, DEEP = (seed_run.trace_id for seed_run in agent_runs(T0))


@pytest.fixture
def engine(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    create_schema(engine)
    rows = [row for r in agent_runs(T0) for row in r.rows]
    # Not runs: a call alone in its trace, a call with no trace, and a run of the month before.
    others = {"link": ""}  # rows written together have the same columns
    rows += [event("3.0", T0, trace_id="e" * 32, **others), event("0.5", T0, trace_id="", **others)]
    rows.append(event("0.01", T0 - timedelta(days=40), trace_id=RESEARCH, call_id="5100000000000000", **others))
    seed(engine, rows)
    return engine


def ledger_sums(engine, period="2026-11"):
    """Per trace, straight from the events: (cost, calls per link)."""
    t = EVENTS
    q = sa.select(t.c.trace_id, t.c.link, t.c.cost_pico).where(t.c.charge_period == period, t.c.trace_id != "")
    cost: dict[str, Decimal] = {}
    links: dict[str, Counter[str]] = {}
    with engine.connect() as conn:
        for trace, link, pico in conn.execute(q):
            cost[trace] = cost.get(trace, ZERO) + from_pico(pico)
            links.setdefault(trace, Counter())[link or "root"] += 1
    return cost, links


def test_every_linked_run_is_found_and_costs_the_sum_of_its_events_to_the_pico_dollar(engine):
    runs = top_runs(engine, "2026-11", top=10)
    cost, links = ledger_sums(engine)
    assert {r.trace_id for r in runs} == {RESEARCH, SUPPORT, TRACED, DEEP}  # not the lone calls
    assert [r.cost_usd for r in runs] == sorted((cost[r.trace_id] for r in runs), reverse=True)
    for r in runs:
        assert r.cost_usd == cost[r.trace_id], r.trace_id
        assert r.links == dict(links[r.trace_id]) and sum(r.links.values()) == r.calls
        # The parts add up to the whole, exactly: models, the tools' own cost, other MCP requests.
        assert sum((m.cost_usd for m in r.by_model), ZERO) + sum((t.own_usd for t in r.by_tool), ZERO) + r.other_usd == r.cost_usd
        assert sum((c.cost_usd for c in r.charged), ZERO) == r.cost_usd
        assert sum(c.calls for c in r.charged) == sum(m.calls for m in r.by_model) + sum(t.calls for t in r.by_tool) == r.calls
        assert run_detail(engine, r.trace_id, "2026-11").as_dict() == r.as_dict()


def test_a_content_linked_run_has_its_turns_tools_and_their_sub_calls(engine):
    run = run_detail(engine, RESEARCH, "2026-11")
    assert run is not None
    assert run.links == {"root": 1, "traceparent": 5, "continuation": 2, "tool_request": 3}
    assert (run.calls, run.llm_calls, run.tool_calls) == (11, 8, 3)
    assert run.cost_usd == Decimal("0.111065")
    assert [(m.model, m.calls, m.cost_usd) for m in run.by_model] == [
        ("gpt-4o", 3, Decimal("0.097625")), ("gpt-4o-mini", 5, Decimal("0.004940")),
    ]  # fmt: skip
    fetch, search = run.by_tool
    assert (fetch.tool, fetch.calls, fetch.own_usd, fetch.subcalls, fetch.subcall_usd) == ("fetch_page", 1, Decimal("0.0045"), 2, Decimal("0.00239"))
    assert (search.tool, search.calls, search.own_usd, search.subcalls, search.subcall_usd) == ("search", 2, Decimal("0.004"), 3, Decimal("0.00255"))
    # The root caller pays for the tool servers' sub-calls made with team web's keys.
    assert (run.department, run.team, run.teams) == ("research", "nlp", ["nlp", "web"])
    assert [(c.team, c.cost_usd) for c in run.charged] == [("nlp", run.cost_usd)]
    # turn 1 -> turn 2 (a continuation) -> fetch_page (asked for by turn 2) -> its LLM call;
    # turn 1 asked for both searches and was continued: three children.
    assert run.depth == 4 and run.fan_out == 3
    assert run.duration_ms == 10 * 1500 + 1200


def test_header_and_traceparent_runs_and_who_is_charged(engine):
    support = run_detail(engine, SUPPORT)
    assert support.links == {"root": 1, "header": 4} and (support.depth, support.fan_out) == (3, 3)
    assert [t.tool for t in support.by_tool] == ["lookup_order", "refund_status"]
    traced = run_detail(engine, TRACED)
    # The client's own span is the parent of three calls: three roots, one payer (the first's).
    assert traced.links == {"root": 3, "traceparent": 2} and len(traced.roots) == 3 and traced.fan_out == 3
    assert (traced.department, traced.team) == ("research", "vision")
    assert [(c.team, c.calls, c.cost_usd) for c in traced.charged] == [
        ("vision", 3, Decimal("0.0305")), ("web", 2, Decimal("0.0083")),
    ]  # fmt: skip
    deep = run_detail(engine, DEEP)
    assert (deep.calls, deep.depth, deep.tool_calls) == (13, 4, 3)  # agent -> summarize_pr -> get_file -> LLM
    pr = next(t for t in deep.by_tool if t.tool == "summarize_pr")
    assert (pr.subcalls, pr.subcall_usd) == (5, Decimal("0.0094"))  # get_file and its LLM call included
    assert run_detail(engine, "0" * 32) is None and run_detail(engine, "") is None


def test_a_month_sees_its_own_calls_of_a_run(engine):
    (early,) = top_runs(engine, "2026-10") or [None]  # one call of it a month before is no run
    assert early is None
    assert run_detail(engine, RESEARCH, "2026-10").calls == 1 and run_detail(engine, RESEARCH).calls == 12


def cli(tmp_path, upstream, *args):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(base_config(tmp_path, upstream.url)))
    return run_cli("report", *args, "--config", str(cfg)).stdout


def test_report_runs_and_call_print_the_same_numbers(engine, tmp_path, upstream):
    runs = top_runs(engine, "2026-11", top=10)
    printed = json.loads(cli(tmp_path, upstream, "runs", "--month", "2026-11", "--top", "10", "--json"))
    assert printed == [r.as_dict() for r in runs]
    research = next(p for p in printed if p["trace_id"] == RESEARCH)
    assert research["cost_usd"] == "0.111065" and research["links"]["continuation"] == 2
    assert research["duration_ms"] == 16200 and research["department"] == "research"
    text = cli(tmp_path, upstream, "runs", "--month", "2026-11", "--top", "10")
    assert "PAYER" in text and "research/nlp" in text and "linked:  root 1, traceparent 5, continuation 2, tool_request 3" in text
    assert "tool     docs/search" in text and "charged  product/web" in text

    tool_call = next(n for r in runs if r.trace_id == DEEP for root in r.roots for n in root.walk() if n.tool == "summarize_pr")
    one = json.loads(cli(tmp_path, upstream, "call", tool_call.call_id, "--json"))
    assert one["total_usd"] == "0.012400" and one["run"] == next(r.as_dict(tree=False) for r in runs if r.trace_id == DEEP)
    assert [c["link"] for c in one["children"]] == ["traceparent"] * 4
    tree, summary = cli(tmp_path, upstream, "call", tool_call.call_id).split("\n\n")
    assert [line.split()[0] for line in tree.splitlines()] == [n.call_id for n in tool_call.walk()]
    assert summary.startswith(f"Run {DEEP}: 13 calls")
