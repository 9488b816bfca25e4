"""Overview: the month so far, where it is heading, and who spends it."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from meterline.costing import previous_period
from meterline.dashboard.context import report, view
from meterline.dashboard.format import (
    bar_height,
    change,
    count_col,
    exact_tooltip,
    for_chart,
    money,
    money_col,
    ranked_bars,
    table,
    text_col,
    usd_axis,
)
from meterline.reports.dimensions import dimension_costs, label
from meterline.reports.overview import Ranked, overview
from meterline.reports.trend import FORECAST_MIN_DAYS, forecast_from

v = view()
o = report(overview, v.org, v.period, v.filters, now=v.now)
month = v.month
st.title(f"AI spend · {v.period}")
if v.filters.narrowed or v.department:
    where = v.filters.where()
    parts = []
    if "department" in where:
        parts.append("department " + ", ".join(v.names.department(d) for d in where.pop("department")))
    if "team" in where:
        parts.append("team " + ", ".join(v.names.team(t) for t in where.pop("team")))
    parts += [f"{k} {', '.join(x)}" for k, x in where.items()]
    if v.filters.tags:
        parts.append("tags " + ", ".join(v.filters.tags))
    st.caption("Filtered: " + "; ".join(parts))

prev = previous_period(v.period)
if month.is_open and o.compare_until is not None:
    compare_label = "vs same days last month"
    compare_help = (f"{prev} from its 1st to {o.compare_until:%Y-%m-%d %H:%M} UTC: as long a stretch as {v.period} "
                    f"has had so far ({month.so_far}), so a partial month is not set against a whole one.")  # fmt: skip
else:
    compare_label = "vs last month"
    compare_help = f"the whole of {prev}"
if o.compare_usd is None:
    compare_help += f". No usage in {prev}, so nothing to compare with."
if month.is_open and o.forecast_usd is None:
    starts = forecast_from(v.period, v.now)
    forecast_help = (f"Shown from {starts:%Y-%m-%d}: a run rate from fewer than {FORECAST_MIN_DAYS} days swings with the "
                     "weekday/weekend cycle.")  # fmt: skip
elif month.is_open:
    forecast_help = f"Month-end at the run rate of the {month.so_far} so far."
else:
    forecast_help = "Only for the open month."

c1, c2, c3, c4 = st.columns(4)
c1.metric(month.total_label, money(o.total_usd), help=f"{o.total_usd:f} USD exactly")
c2.metric("Forecast to month-end", money(o.forecast_usd), help=forecast_help)
c3.metric(compare_label, money(o.compare_usd), delta=change(o.change_percent), delta_color="inverse", help=compare_help)
c4.metric("Requests", f"{o.requests:,}")

def calls(n: int, has: str = "has", have: str = "have") -> str:
    return f"**{n:,}** request {has}" if n == 1 else f"**{n:,}** requests {have}"


flags = []
if o.unpriced_requests:
    flags.append(f"{calls(o.unpriced_requests)} **no price** (recorded at $0): add their models under `prices:`.")
if o.estimated_requests:
    flags.append(f"{calls(o.estimated_requests)} **estimated** usage ({money(o.estimated_usd)}): the upstream reported none.")
if o.rejected_requests:
    flags.append(f"{calls(o.rejected_requests, 'was', 'were')} **refused by a budget**.")
for f in flags:
    st.warning(f, icon="⚠️")

st.subheader("Spend per day by department")
if not o.daily:
    st.info("No metered calls in this month yet." if month.is_open else "No metered calls in this month.")
else:
    daily = pd.DataFrame([{"day": d.day.isoformat(), "department": d.name, "requests": d.requests, "cost": d.cost_usd} for d in o.daily])
    data = for_chart(daily, "cost")
    largest = float(data.groupby("day")["cost"].sum().max())
    order = sorted(data["department"].unique(), key=str.casefold)
    st.altair_chart(
        alt.Chart(data)
        .mark_bar(width={"band": 0.8})
        .encode(
            x=alt.X("yearmonthdate(day):T", title=None, axis=alt.Axis(format="%b %d", labelOverlap=True, tickCount={"interval": "day", "step": 2})),
            y=alt.Y("sum(cost):Q", title="Cost (USD)", axis=usd_axis(largest)),
            color=alt.Color("department:N", title="Department", sort=order, scale=alt.Scale(scheme="tableau10"),
                            legend=alt.Legend(labelLimit=200)),
            tooltip=[alt.Tooltip("day:T", title="Day", format="%Y-%m-%d"), alt.Tooltip("department:N", title="Department"),
                     alt.Tooltip("requests:Q", title="Requests", format=","), exact_tooltip("cost", "Cost (USD)")],
        )  # fmt: skip
        .properties(height=320),
        width="stretch",
    )
    if month.is_open:
        st.caption(f"{v.period} so far: {month.so_far}, to {v.now:%Y-%m-%d %H:%M} UTC.")

COLUMNS = {
    "requests": count_col("Requests", width=110),
    "input_tokens": count_col("Input tokens", width=130),
    "output_tokens": count_col("Output tokens", width=130),
    "cost_usd": money_col("Cost", width=120),
}


def ranked(rows: list[Ranked], title: str, key: str) -> None:
    if not rows:
        st.caption("Nothing in this month.")
        return
    data = [{"name": r.label, "requests": r.requests, "input_tokens": r.input_tokens, "output_tokens": r.output_tokens,
             "cost_usd": r.cost_usd} for r in rows]  # fmt: skip
    frame = pd.DataFrame(data)
    # The chart above the table, each the page's width: long names are never cut.
    tokens = [alt.Tooltip("input_tokens:Q", title="Input tokens", format=","), alt.Tooltip("output_tokens:Q", title="Output tokens", format=",")]
    st.altair_chart(ranked_bars(frame, "name", title, *tokens), width="stretch")
    table(data, {"name": text_col(title, width=320), **COLUMNS}, key=key)


st.subheader("Top spenders")
tab_teams, tab_models, tab_users = st.tabs(["Teams", "Models", "Users"])
with tab_teams:
    ranked(o.top_teams, "Team", "top_teams")
with tab_models:
    ranked(o.top_models, "Model", "top_models")
with tab_users:
    ranked(o.top_users, "User", "top_users")

# Cost by billed dimension: only when some of it is more than text at the default tier.
if not v.filters.tags:
    dims = report(dimension_costs, v.period, o.total_usd, v.filters.where())
    if dims.billed_beyond_text:
        st.subheader("Cost by billed dimension")
        st.caption("What the providers bill for: cached input, cache writes, audio and image tokens, server-side tools, "
                   "service and long-context tiers. The parts add up to the month's cost.")  # fmt: skip
        dim_rows = [{"name": label(k), "cost_usd": c} for k, c in dims.by_dimension.items() if c]
        bars = for_chart(pd.DataFrame(dim_rows), "cost_usd")
        st.altair_chart(
            alt.Chart(bars).mark_bar().encode(
                x=alt.X("cost_usd:Q", title="Cost (USD)", axis=usd_axis(float(bars["cost_usd"].max() or 0))),
                y=alt.Y("name:N", sort="-x", title=None, axis=alt.Axis(labelLimit=260, labelOverlap=False)),
                tooltip=[alt.Tooltip("name:N", title="Dimension"), exact_tooltip("cost_usd", "Cost (USD)")],
            ).properties(height=bar_height()),
            width="stretch",
        )
        tiers = [{"name": f"the {t} service tier", "cost_usd": c} for t, c in dims.by_service_tier.items() if c]
        if dims.long_context_usd:
            tiers.append({"name": "past a long-context threshold (whole calls)", "cost_usd": dims.long_context_usd})
        left, right = st.columns(2)
        with left:
            table(dim_rows, {"name": text_col("Dimension", width=260), "cost_usd": money_col("Cost", width=120)}, key="dims")
        with right:
            table(tiers, {"name": text_col("Calls at", width=300), "cost_usd": money_col("Cost", width=120)}, key="tiers")
