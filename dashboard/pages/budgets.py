"""Budgets: each budget's burn against the month, the forecast, who is near or over."""

from __future__ import annotations

import calendar
from datetime import date

import altair as alt
import pandas as pd
import streamlit as st

from meterline.dashboard.context import report, view
from meterline.dashboard.format import (
    bar_height,
    exact_tooltip,
    money,
    money_col,
    percent_col,
    table,
    text_col,
    usd_axis,
    usd_tooltip,
)
from meterline.reports.budgets_report import STATE_TEXT, BudgetStatus, budget_status
from meterline.reports.trend import FORECAST_MIN_DAYS

STATE_COLOR = alt.Scale(domain=list(STATE_TEXT.values()), range=["#d62728", "#ff7f0e", "#e6c229", "#2ca02c"])
SCOPE_TEXT = {"department": "Department", "team": "Team", "key": "Key"}

v = view()
month = v.month
st.title(f"Budgets · {v.period}")
rows = report(budget_status, v.settings, v.period, now=v.now, department=v.department)
if not rows:
    st.info("No budgets configured: set `budget_usd_monthly` on departments or teams, or `budgets.keys`.")
    st.stop()


def label(b: BudgetStatus) -> str:
    """ "Helpdesk (team, Customer Support)": what a budget is, in one label."""
    if b.scope == "department":
        return f"{b.name} (department)"
    return f"{b.name} ({b.scope}, {v.names.department(b.department)})" if b.department else f"{b.name} ({b.scope})"


over = [b for b in rows if b.state == "over"]
near = [b for b in rows if b.state == "near"]
c1, c2, c3 = st.columns(3)
c1.metric("Budgets", len(rows))
c2.metric("Over: calls refused", len(over))
c3.metric("Near the limit", len(near), help=f"at or past {rows[0].threshold_percent}% of the budget")
# Warnings, not errors: the page works; error elements are kept for what went wrong.
for b in over:
    st.warning(f"**{label(b)}** is over its budget: {money(b.spent_usd)} of {money(b.budget_usd)}; its calls are refused.", icon=":material/block:")
for b in near:
    st.warning(f"**{label(b)}** has used {b.used_percent}% of its budget ({money(b.spent_usd)} of {money(b.budget_usd)}).", icon=":material/warning:")

data = [
    {"label": label(b), "scope": SCOPE_TEXT.get(b.scope, b.scope), "budget": b.name, "department": v.names.department(b.department) if b.department else None,
     "state": STATE_TEXT[b.state], "used_percent": float(b.used_percent), "budget_usd": b.budget_usd, "spent_usd": b.spent_usd,
     "forecast_usd": b.forecast_usd, "run_rate_usd": b.run_rate_usd}
    for b in rows
]  # fmt: skip
frame = pd.DataFrame(data)
shown = frame.assign(used=frame["used_percent"].clip(upper=150))  # a budget 40x over would flatten the rest
st.altair_chart(
    (alt.Chart(shown)
    .mark_bar()
    .encode(
        x=alt.X("used:Q", title="% of the month's budget used", scale=alt.Scale(domain=[0, max(110.0, float(shown["used"].max()))]),
                axis=alt.Axis(tickCount=6, labelOverlap=True)),
        y=alt.Y("label:N", sort="-x", title=None, axis=alt.Axis(labelLimit=320, labelOverlap=False)),
        color=alt.Color("state:N", scale=STATE_COLOR, legend=alt.Legend(title="State", orient="bottom", labelLimit=200)),
        tooltip=[alt.Tooltip("label:N", title="Budget"), alt.Tooltip("state:N", title="State"),
                 alt.Tooltip("used_percent:Q", format=",.1f", title="% used")],
    )  # fmt: skip
    + alt.Chart(pd.DataFrame({"x": [100]})).mark_rule(color="black", strokeDash=[4, 4]).encode(x="x:Q")
).properties(height=bar_height(28)),
    width="stretch",
)
forecast_help = (
    f"Month-end at the run rate, from day {FORECAST_MIN_DAYS + 1} of the open month; never past the limit, since calls "
    "past it are refused (the burn chart's note says where the run rate alone would end)."
)
table(
    data,
    {
        "label": text_col("Budget", width=280, help="what the budget is on: a department, a team (with its department) or a key"),
        "state": text_col("State", width=150),
        "used_percent": percent_col("Used"),
        "budget_usd": money_col("Limit"),
        "spent_usd": money_col("Spent"),
        "forecast_usd": money_col("Forecast", help=forecast_help),
    },
    key="budgets_table",
)

st.subheader("Burn")
burnable = {f"{b.scope}:{b.id}": b for b in rows if b.burn}
if not burnable:
    st.caption("No spend against these budgets yet this month." if month.is_open else "No spend against these budgets in this month.")
    st.stop()
# The picker holds ids, not rows: a row picked in another month would keep that month's burn.
ids = list(burnable)
if st.session_state.get("burn_budget") not in ids:
    st.session_state["burn_budget"] = ids[0]
pick = burnable[st.selectbox("Budget", ids, format_func=lambda i: label(burnable[i]), key="burn_budget")]
year, mon = int(v.period[:4]), int(v.period[5:])
end = date(year, mon, calendar.monthrange(year, mon)[1])
lines = [pd.DataFrame([{"day": d.isoformat(), "usd": float(x), "what": "spent"} for d, x in pick.burn])]
if pick.forecast_usd is not None:
    last_day, last = pick.burn[-1]
    lines.append(pd.DataFrame([{"day": last_day.isoformat(), "usd": float(last), "what": "forecast"},
                               {"day": end.isoformat(), "usd": float(pick.forecast_usd), "what": "forecast"}]))  # fmt: skip
burn = pd.concat(lines)
top = max(float(burn["usd"].max()), float(pick.budget_usd)) * 1.1
chart = (
    alt.Chart(burn)
    .mark_line(point=True)
    .encode(
        x=alt.X("day:T", title=None, scale=alt.Scale(domain=[f"{v.period}-01", end.isoformat()]),
                axis=alt.Axis(format="%b %d", labelOverlap=True)),
        y=alt.Y("usd:Q", title="Cost (USD, cumulative)", axis=usd_axis(top), scale=alt.Scale(domain=[0, top])),
        color=alt.Color("what:N", scale=alt.Scale(domain=["spent", "forecast", "limit"], range=["#1f77b4", "#1f77b4", "#d62728"]),
                        legend=alt.Legend(title=None, orient="bottom", symbolType="stroke")),
        strokeDash=alt.StrokeDash("what:N", scale=alt.Scale(domain=["spent", "forecast", "limit"], range=[[1, 0], [6, 4], [2, 2]]), legend=None),
        tooltip=[alt.Tooltip("day:T", title="Day", format="%Y-%m-%d"), alt.Tooltip("what:N", title="Line"), exact_tooltip("usd", "Cost (USD)")],
    )  # fmt: skip
)
rule = (
    alt.Chart(pd.DataFrame({"usd": [float(pick.budget_usd)], "what": ["limit"]}))
    .mark_rule(color="#d62728", strokeDash=[2, 2])
    .encode(y="usd:Q", tooltip=[alt.Tooltip("what:N", title="Line"), usd_tooltip("usd", "Limit (USD)")])
)
st.altair_chart((chart + rule).properties(height=320), width="stretch")
note = f"{label(pick)}: {money(pick.spent_usd)} spent of a {money(pick.budget_usd)} limit"
if pick.forecast_usd is not None:
    note += f"; forecast {money(pick.forecast_usd)} at month-end"
    if pick.capped:
        note += f" (the run rate, {money(pick.run_rate_usd)}, would pass the limit: calls past it are refused)"
st.caption(note + ".")
