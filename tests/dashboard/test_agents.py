"""The Agents page with agent runs as SDKs make them (tests/seed.py's agent_runs: turns linked by
continuation, tool calls by tool_request, tool servers' sub-calls by traceparent, a header run):
every call of a run is on the page, with what spawned it, and the numbers are the reports'."""

from __future__ import annotations

import os
import shutil

import pytest

from meterline.dashboard.format import money
from meterline.reports.agents import top_runs
from tests.dashboard.conftest import ADMIN_PASSWORD, NOW, cells, page, signed_in
from tests.dashboard.screens import CHROMIUM, WIDTHS, dashboard, screenshots
from tests.dashboard.test_screenshots import ARTIFACTS, PNG
from tests.seed import agent_runs, seed

RUNS_AT = NOW.replace(day=12, hour=9)
CALL = "Call, under the call that made it"


@pytest.fixture
def runs_ledger(ledger):
    seed(ledger.engine, [row for r in agent_runs(RUNS_AT) for row in r.rows])
    return ledger


@pytest.mark.skipif(not shutil.which(CHROMIUM), reason="Debian's chromium is not installed")
def test_the_agents_page_renders_every_run_in_chromium(runs_ledger):
    from meterline.costing.run_caps import note_capped

    deep = next(r for r in agent_runs(RUNS_AT) if len(r.rows) == 13)  # shown as capped too
    note_capped(runs_ledger.engine, deep.rows[0]["trace_id"], "nlp", "it made 12 calls, its cap is 12", RUNS_AT)
    out = ARTIFACTS / "agents"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    env = {**os.environ, "METERLINE_DASHBOARD_PASSWORD": ADMIN_PASSWORD}
    with dashboard(runs_ledger.config_path, env, out / "dashboard.log", NOW.isoformat()) as url:
        shots, problems = screenshots(url, ADMIN_PASSWORD, out, pages=["Agents and tools"])
    assert not problems, problems
    assert sorted(shots) == [("Agents and tools", w) for w in WIDTHS]
    for path in shots.values():
        assert path.read_bytes().startswith(PNG), path


def tree_cells(at):
    """The call tree table: the page's third table (after tool costs and runs)."""
    return cells(at, 2)


def test_every_call_of_a_run_is_in_its_tree_under_the_call_that_made_it(runs_ledger):
    at = page(signed_in(), "agents")
    runs = top_runs(runs_ledger.engine, runs_ledger.period, 20)
    listed = cells(at, 1)
    assert [r["Trace id"] for r in listed] == [r.trace_id for r in runs]
    assert [r["Cost"] for r in listed] == [f"${r.cost_usd:.4f}" for r in runs]
    research = next(r for r in listed if r["Trace id"] == "51" * 16)
    assert research["Linked by"] == "root 1, traceparent 5, continuation 2, tool_request 3"
    assert (research["Paid by"], research["Depth"], research["Fan-out"], research["Seconds"]) == ("nlp (Research)", "4", "3", "16.2")

    deep = next(r for r in runs if r.calls == 13)
    at.selectbox(key="run_pick").set_value(deep).run()
    assert not at.exception, at.exception
    rows = tree_cells(at)
    nodes = [n for root in deep.roots for n in root.walk()]  # depth-first, as the table
    assert len(rows) == 13 and [r["Call id"] for r in rows] == [n.call_id for n in nodes]
    assert [r["Own cost"] for r in rows] == [f"${n.cost_usd:.6f}" for n in nodes]
    assert rows[0]["With sub-calls"] == f"${deep.cost_usd:.6f}" and rows[0]["Share"] == "100.0%"
    # Which tool spawned what: get_file is summarize_pr's, its LLM call get_file's.
    get_file = next(i for i, r in enumerate(rows) if r[CALL].endswith("tool github/get_file"))
    assert rows[get_file]["Made by"] == "tool github/summarize_pr"
    assert rows[get_file + 1]["Made by"] == "tool github/get_file" and rows[get_file + 1]["Link"] == "traceparent"
    assert rows[get_file + 1][CALL].index("llm") > rows[get_file][CALL].index("tool")  # indented below it
    assert {r["Link"] for r in rows} == {"root", "tool_request", "traceparent", "continuation"}
    assert [m.value for m in at.metric][:3] == [money(deep.cost_usd, 4), "nlp (Research)", "13"]
    assert at.metric[3].value == "4 · 4" and at.metric[4].value == f"{deep.duration_ms / 1000:,.1f} s"
    assert any(c.value == "Linked by: root 1, traceparent 9, continuation 1, tool_request 2" for c in at.caption)


def test_a_capped_run_is_listed_with_what_it_spent_and_why(runs_ledger):
    from meterline.costing.run_caps import note_capped

    run = next(r for r in agent_runs(RUNS_AT) if len(r.rows) == 13)
    trace = run.rows[0]["trace_id"]
    note_capped(runs_ledger.engine, trace, "nlp", "it made 12 calls, its cap is 12", RUNS_AT)
    at = page(signed_in(), "agents")
    assert not at.exception, at.exception
    assert "Runs stopped by their caps" in [s.value for s in at.subheader]
    (capped,) = cells(at, 1)
    spent = sum(r["cost_pico"] for r in run.rows) / 10**12
    assert (capped["Trace id"], capped["Calls"], capped["Why"]) == (trace, "13", "it made 12 calls, its cap is 12")
    assert capped["Spent"] == f"${spent:.4f}"
