"""Departments: drill down department -> team -> project -> model -> user."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from meterline.dashboard.context import report, view
from meterline.dashboard.format import fixed, money, ranked_bars
from meterline.reports.drilldown import LEVELS, drilldown

ALL = "\x00all"
v = view()
st.title(f"Departments · {v.period}")
st.caption("Pick a department, then a team, project and model, to see who is behind the spend.")


def shown(value: str) -> str:
    return "(all)" if value == ALL else (value or "(none)")


path: list[str] = []
columns = st.columns(len(LEVELS))
for i, level in enumerate(LEVELS):
    options = [r.value for r in report(drilldown, v.period, tuple(path), v.filters).rows]
    if level == "department" and v.department:
        options = [v.department]
    picked = columns[i].selectbox(level.title(), [ALL, *options], key=f"drill_{level}", format_func=shown)
    if picked == ALL or picked not in options:
        break
    path.append(picked)

d = report(drilldown, v.period, tuple(path), v.filters)
where = " / ".join(f"{lvl} {shown(val)}" for lvl, val in zip(LEVELS, path, strict=False)) or "every department"
c1, c2, c3, c4 = st.columns(4)
c1.metric("Cost", money(d.total_usd), help=f"{d.total_usd:f} USD exactly ({where})")
c2.metric("Requests", f"{d.requests:,}")
c3.metric("Input tokens", f"{sum(r.input_tokens for r in d.rows):,}")
c4.metric("Output tokens", f"{sum(r.output_tokens for r in d.rows):,}")

if not d.rows:
    st.info("No metered calls here in this month.")
    st.stop()
name = d.level or LEVELS[-1]
frame = pd.DataFrame([
    {name: shown(r.value), "requests": r.requests, "input_tokens": r.input_tokens, "cached_input_tokens": r.cached_input_tokens,
     "output_tokens": r.output_tokens, "reasoning_tokens": r.reasoning_tokens, "tool_calls": r.tool_calls, "cost_usd": r.cost_usd}
    for r in d.rows
])  # fmt: skip
st.subheader(f"By {name}" + (f" in {where}" if path else ""))
tokens = [alt.Tooltip("input_tokens:Q", format=","), alt.Tooltip("output_tokens:Q", format=",")]
st.altair_chart(ranked_bars(frame, name, *tokens), width="stretch")
st.dataframe(frame.assign(cost_usd=frame["cost_usd"].map(fixed)), hide_index=True, width="stretch")
