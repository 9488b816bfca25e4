"""Budgets: each budget's burn against the month, the forecast, who is near or over."""

from __future__ import annotations

import calendar
from datetime import date

import altair as alt
import pandas as pd
import streamlit as st

from meterline.dashboard.context import report, view
from meterline.dashboard.format import USD_AXIS, fixed, money, usd_tooltip
from meterline.reports.budgets_report import budget_status

STATE_TEXT = {"over": "over: calls refused", "near": "near", "forecast_over": "on course to pass", "ok": "ok"}
STATE_COLOR = alt.Scale(domain=list(STATE_TEXT), range=["#d62728", "#ff7f0e", "#e6c229", "#2ca02c"])

v = view()
st.title(f"Budgets · {v.period}")
rows = report(budget_status, v.settings, v.period, department=v.department)
if not rows:
    st.info("No budgets configured: set `budget_usd_monthly` on departments or teams, or `budgets.keys`.")
    st.stop()

over = [b for b in rows if b.state == "over"]
near = [b for b in rows if b.state == "near"]
c1, c2, c3 = st.columns(3)
c1.metric("Budgets", len(rows))
c2.metric("Over (refusing calls)", len(over))
c3.metric("Near the limit", len(near), help=f"at or past {rows[0].threshold_percent}% of the budget")
for b in over:
    st.error(f"{b.scope} **{b.name}** is over its budget: {money(b.spent_usd)} of {money(b.budget_usd)}; its calls are refused.")
for b in near:
    st.warning(f"{b.scope} **{b.name}** has used {b.used_percent}% of its budget ({money(b.spent_usd)} of {money(b.budget_usd)}).")

table = pd.DataFrame([
    {"scope": b.scope, "budget": b.name, "department": b.department, "state": b.state, "used_percent": float(b.used_percent),
     "budget_usd": b.budget_usd, "spent_usd": b.spent_usd, "forecast_usd": b.forecast_usd}
    for b in rows
])  # fmt: skip
st.altair_chart(
    alt.Chart(table.assign(label=table["scope"] + " " + table["budget"]))
    .mark_bar()
    .encode(
        x=alt.X("used_percent:Q", title="% of the month's budget used"),
        y=alt.Y("label:N", sort="-x", title=None),
        color=alt.Color("state:N", scale=STATE_COLOR, legend=alt.Legend(title="State")),
        tooltip=["label:N", "state:N", alt.Tooltip("used_percent:Q", format=".1f", title="% used")],
    )
    + alt.Chart(pd.DataFrame({"x": [100]})).mark_rule(color="black", strokeDash=[4, 4]).encode(x="x:Q"),
    width="stretch",
)
st.dataframe(
    table.assign(
        state=table["state"].map(STATE_TEXT),
        budget_usd=table["budget_usd"].map(lambda x: fixed(x, 2)),
        spent_usd=table["spent_usd"].map(fixed),
        forecast_usd=table["forecast_usd"].map(lambda x: "" if x is None else fixed(x, 2)),
    ),
    hide_index=True,
    width="stretch",
)

st.subheader("Burn")
burnable = [b for b in rows if b.burn]
if burnable:
    pick = st.selectbox("Budget", burnable, format_func=lambda b: f"{b.scope} {b.name}", key="burn_budget")
    year, month = int(v.period[:4]), int(v.period[5:])
    end = date(year, month, calendar.monthrange(year, month)[1])
    burn = pd.DataFrame([{"day": d.isoformat(), "spent": float(x), "what": "spent"} for d, x in pick.burn])
    lines = [burn]
    if pick.forecast_usd is not None:
        last_day, last = pick.burn[-1]
        lines.append(pd.DataFrame([{"day": last_day.isoformat(), "spent": float(last), "what": "forecast"},
                                   {"day": end.isoformat(), "spent": float(pick.forecast_usd), "what": "forecast"}]))
    chart = (
        alt.Chart(pd.concat(lines))
        .mark_line(point=True)
        .encode(
            x=alt.X("day:T", title=None, scale=alt.Scale(domain=[f"{v.period}-01", end.isoformat()])),
            y=alt.Y("spent:Q", title="USD (cumulative)", axis=USD_AXIS),
            strokeDash=alt.StrokeDash(
                "what:N", scale=alt.Scale(domain=["spent", "forecast"], range=[[1, 0], [6, 4]]), legend=alt.Legend(title=None)
            ),
            tooltip=[alt.Tooltip("day:T", format="%Y-%m-%d"), "what:N", usd_tooltip("spent")],
        )
    )
    rule = alt.Chart(pd.DataFrame({"budget": [float(pick.budget_usd)]})).mark_rule(color="#d62728").encode(
        y="budget:Q", tooltip=[usd_tooltip("budget", "budget")]
    )
    st.altair_chart(chart + rule, width="stretch")
else:
    st.caption("No spend against these budgets yet this month.")
