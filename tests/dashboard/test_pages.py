"""Departments, Agents and tools, Budgets: the pages show what reports compute."""

from __future__ import annotations

from meterline.dashboard.format import fixed, money
from meterline.reports.agents import tool_costs, top_runs
from meterline.reports.budgets_report import budget_status
from meterline.reports.drilldown import drilldown
from tests.dashboard.conftest import page, signed_in


def test_departments_drill_down_from_department_to_user(ledger):
    at = page(signed_in(), "departments")
    top = drilldown(ledger.engine, ledger.period)
    table = at.dataframe[0].value
    assert list(table["department"]) == [r.value for r in top.rows] == ["product", "research", "legal"]
    assert list(table["cost_usd"]) == [fixed(r.cost_usd) for r in top.rows]
    at.selectbox(key="drill_department").set_value("research").run()
    at.selectbox(key="drill_team").set_value("nlp").run()
    at.selectbox(key="drill_project").set_value("search").run()
    at.selectbox(key="drill_model").set_value("gpt-4o-mini").run()
    assert not at.exception
    below = drilldown(ledger.engine, ledger.period, ("research", "nlp", "search", "gpt-4o-mini"))
    table = at.dataframe[0].value
    assert list(table["user"]) == ["ana.nlp"] == [r.value for r in below.rows]
    assert list(table["input_tokens"]) == [1000] and list(table["output_tokens"]) == [400]
    assert at.metric[0].value == money(below.total_usd) == "$1.25"


def test_agents_page_shows_tool_costs_with_subcalls_and_the_largest_runs(ledger):
    at = page(signed_in(), "agents")
    tools = tool_costs(ledger.engine, ledger.period)
    table = at.dataframe[0].value
    assert list(table["tool"]) == [f"{t.server}/{t.tool}" for t in tools] == ["sim/summarize"]
    assert list(table["subcall_usd"]) == [fixed(t.subcall_usd) for t in tools] == ["0.050000"]
    assert list(table["total_usd"]) == ["0.060000"]
    runs = top_runs(ledger.engine, ledger.period, 20)
    table = at.dataframe[1].value
    assert list(table["trace_id"]) == [r.trace_id for r in runs]
    assert list(table["cost_usd"]) == [fixed(r.cost_usd) for r in runs] == ["0.065000"]
    assert (table["depth"][0], table["fan_out"][0]) == (2, 2)


def test_budgets_page_shows_who_is_over_and_near(ledger):
    at = page(signed_in(), "budgets")
    rows = budget_status(ledger.engine, ledger.settings, ledger.period)
    table = at.dataframe[0].value
    assert list(zip(table["scope"], table["budget"], strict=True)) == [(b.scope, b.name) for b in rows]
    assert list(table["spent_usd"]) == [fixed(b.spent_usd) for b in rows]
    states = dict(zip(table["budget"], table["state"], strict=True))
    assert states["nlp"].endswith("over: calls refused")  # 1.815 of 1.5
    assert states["Product"].endswith("near")  # 3.52 of 4
    assert states["Research"].endswith("ok") or states["Research"].endswith("on course to pass")
    assert any("nlp" in e.value and "over its budget" in e.value for e in at.error)
