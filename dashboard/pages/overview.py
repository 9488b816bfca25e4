"""Overview: the month so far, where it is heading, and who spends it."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from meterline.dashboard.context import report, view
from meterline.dashboard.format import USD_AXIS, change, fixed, for_chart, money, ranked_bars, usd_tooltip
from meterline.reports.overview import Ranked, overview

v = view()
o = report(overview, v.org, v.period, v.filters)
st.title(f"AI spend · {v.period}")
if v.filters.narrowed or v.department:
    st.caption("Filtered: " + ", ".join(f"{k} {', '.join(x)}" for k, x in v.filters.where().items()) + (f"; tags {', '.join(v.filters.tags)}" if v.filters.tags else ""))

c1, c2, c3, c4 = st.columns(4)
c1.metric("Month to date", money(o.total_usd), help=f"{o.total_usd:f} USD exactly")
c2.metric("Forecast to month-end", money(o.forecast_usd), help="run rate so far; shown for the current month")
c3.metric("vs last month", money(o.previous_total_usd), delta=change(o.change_percent), delta_color="inverse",
          help="last month's total; the change is this month so far against it")
c4.metric("Requests", f"{o.requests:,}")

flags = []
if o.unpriced_requests:
    flags.append(f"**{o.unpriced_requests:,}** requests have **no price** (recorded at $0): add their models under `prices:`.")
if o.estimated_requests:
    flags.append(f"**{o.estimated_requests:,}** requests have **estimated** usage ({money(o.estimated_usd)}): the upstream reported none.")
if o.rejected_requests:
    flags.append(f"**{o.rejected_requests:,}** requests were **refused by a budget**.")
for f in flags:
    st.warning(f, icon="⚠️")

st.subheader("Spend per day by department")
if not o.daily:
    st.info("No metered calls in this month yet.")
else:
    daily = pd.DataFrame([{"day": d.day.isoformat(), "department": d.name, "requests": d.requests, "cost": d.cost_usd} for d in o.daily])
    st.altair_chart(
        alt.Chart(for_chart(daily, "cost"))
        .mark_bar()
        .encode(
            x=alt.X("day:T", title=None, axis=alt.Axis(format="%b %d")),
            y=alt.Y("sum(cost):Q", title="USD", axis=USD_AXIS),
            color=alt.Color("department:N", title="Department"),
            tooltip=[alt.Tooltip("day:T", format="%Y-%m-%d"), "department:N", alt.Tooltip("requests:Q", format=","), usd_tooltip("cost")],
        ),
        width="stretch",
    )


def ranked(title: str, rows: list[Ranked], name: str) -> None:
    st.subheader(title)
    if not rows:
        st.caption("Nothing yet.")
        return
    frame = pd.DataFrame([{name: r.label, "requests": r.requests, "input_tokens": r.input_tokens,
                           "output_tokens": r.output_tokens, "cost_usd": r.cost_usd} for r in rows])
    st.altair_chart(ranked_bars(frame, name), width="stretch")
    st.dataframe(frame.assign(cost_usd=frame["cost_usd"].map(fixed)), hide_index=True, width="stretch")


left, mid, right = st.columns(3)
with left:
    ranked("Top teams", o.top_teams, "team")
with mid:
    ranked("Top models", o.top_models, "model")
with right:
    ranked("Top users", o.top_users, "user")
