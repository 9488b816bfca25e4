"""Departments, Agents and tools, Budgets: the pages show what reports compute, as people read it."""

from __future__ import annotations

from meterline.dashboard.format import money
from meterline.reports.agents import tool_costs, top_runs
from meterline.reports.budgets_report import budget_status
from meterline.reports.drilldown import drilldown
from tests.dashboard.conftest import NOW, cells, labels, page, signed_in


def test_departments_drill_down_from_department_to_user(ledger):
    at = page(signed_in(), "departments")
    top = drilldown(ledger.engine, ledger.period)
    rows = cells(at)
    assert [r["Department"] for r in rows] == ["Product", "Research", "Legal"]  # by cost
    assert [r["Id"] for r in rows] == [r.value for r in top.rows] == ["product", "research", "legal"]
    assert [r["Cost"] for r in rows] == [money(r.cost_usd) for r in top.rows]
    assert labels(at)[:3] == ["Department", "Id", "Requests"] and "Reasoning" in labels(at)
    at.selectbox(key="drill_department").set_value("research").run()
    at.selectbox(key="drill_team").set_value("nlp").run()
    at.selectbox(key="drill_project").set_value("search").run()
    at.selectbox(key="drill_model").set_value("gpt-4o-mini").run()
    assert not at.exception
    below = drilldown(ledger.engine, ledger.period, ("research", "nlp", "search", "gpt-4o-mini"))
    rows = cells(at)
    assert [r["User"] for r in rows] == ["ana.nlp"] == [r.value for r in below.rows]
    assert rows[0]["Input tokens"] == "1,000" and rows[0]["Output tokens"] == "400"
    assert at.metric[0].value == money(below.total_usd) == "$1.25"


def test_agents_page_shows_tool_costs_with_subcalls_and_the_largest_runs(ledger):
    at = page(signed_in(), "agents")
    tools = tool_costs(ledger.engine, ledger.period)
    rows = cells(at, 0)
    assert [r["Tool"] for r in rows] == [f"{t.server}/{t.tool}" for t in tools] == ["sim/summarize"]
    assert rows[0]["Sub-calls cost"] == "$0.0500" and rows[0]["Total"] == "$0.0600"
    runs = top_runs(ledger.engine, ledger.period, 20)
    rows = cells(at, 1)
    assert [r["Trace id"] for r in rows] == [r.trace_id for r in runs]
    assert [r["Cost"] for r in rows] == [f"${r.cost_usd:.4f}" for r in runs] == ["$0.0650"]
    assert rows[0]["Paid by"] == "nlp (Research)"
    assert (rows[0]["Depth"], rows[0]["Fan-out"]) == ("2", "2")


def test_budgets_page_shows_who_is_over_and_near_in_the_words_of_its_legend(ledger):
    at = page(signed_in(), "budgets")
    rows = budget_status(ledger.engine, ledger.settings, ledger.period, now=NOW)
    shown = cells(at)
    assert [r["Budget"] for r in shown] == ["nlp (team, Research)", "Product (department)", "Research (department)"]
    assert len(rows) == 3 and [r["Spent"] for r in shown] == [money(b.spent_usd) for b in rows]
    assert labels(at) == ["Budget", "State", "Used", "Limit", "Spent", "Forecast"]
    states = {r["Budget"]: r["State"] for r in shown}
    assert states["nlp (team, Research)"] == "over: calls refused"  # 1.815 of 1.5
    assert states["Product (department)"] == "near the limit"  # 3.52 of 4
    assert states["Research (department)"] in ("within budget", "on course to pass")
    assert any("nlp (team, Research)" in e.value and "over its budget" in e.value for e in at.warning)
    assert not at.error


def test_a_budget_forecast_never_passes_the_limit_it_is_held_to(ledger):
    at = page(signed_in(), "budgets")
    shown = {r["Budget"].split(" (")[0]: r for r in cells(at)}
    nlp = shown["nlp"]  # over its $1.50: refused from then on, so the month ends where it is
    assert nlp["Limit"] == "$1.50" and nlp["Forecast"] == nlp["Spent"] == "$1.82"
    product = next(b for b in budget_status(ledger.engine, ledger.settings, ledger.period, now=NOW) if b.name == "Product")
    assert product.run_rate_usd > product.budget_usd and product.forecast_usd == product.budget_usd
    assert shown["Product"]["Forecast"] == "$4.00"


def test_the_burn_chart_follows_the_month_when_it_changes(ledger):
    at = page(signed_in(), "budgets")
    first = at.selectbox(key="burn_budget").value
    at.selectbox(key="f_month").set_value(ledger.previous).run()
    assert not at.exception and at.title[0].value == f"Budgets · {ledger.previous}"
    pick = at.selectbox(key="burn_budget")
    spent = budget_status(ledger.engine, ledger.settings, ledger.previous, now=NOW)
    burning = {f"{b.scope}:{b.id}": b for b in spent if b.burn}
    assert pick.value in burning and pick.options == [o for o in pick.options if o in burning] or first
    caption = " ".join(c.value for c in at.caption)
    b = burning[pick.value]
    assert f"{money(b.spent_usd)} spent of a {money(b.budget_usd)} limit" in caption
