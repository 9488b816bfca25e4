"""Departments: drill down department -> team -> project -> model -> user."""

from __future__ import annotations

from functools import partial

import altair as alt
import pandas as pd
import streamlit as st

from meterline.dashboard.context import report, view
from meterline.dashboard.format import count_col, money, money_col, ranked_bars, table, text_col
from meterline.reports.drilldown import LEVELS, drilldown

ALL = "\x00all"
TITLES = {"department": "Department", "team": "Team", "project": "Project", "model": "Model", "user": "User"}
v = view()
st.title(f"Departments · {v.period}")
st.caption("Pick a department, then a team, project and model, to see who is behind the spend.")


def shown(level: str, value: str) -> str:
    """A value as people read it: names for departments and teams, "(none)" for no value."""
    if value == ALL:
        return "(all)"
    if level == "department":
        return v.names.department(value)
    if level == "team":
        return v.names.team(value)
    return value or "(none)"


def reading_order(level: str, value: str) -> tuple[str, str]:
    return shown(level, value).casefold(), value


path: list[str] = []
columns = st.columns(len(LEVELS))
for i, level in enumerate(LEVELS):
    options = [r.value for r in report(drilldown, v.period, tuple(path), v.filters).rows]
    if level == "department" and v.department:
        options = [v.department]
    options = sorted(options, key=partial(reading_order, level))
    key = f"drill_{level}"
    if st.session_state.get(key, ALL) not in (ALL, *options):
        st.session_state[key] = ALL  # picked in another month, or under another parent
    picked = columns[i].selectbox(TITLES[level], [ALL, *options], key=key, format_func=partial(shown, level))
    if picked is None or picked == ALL:
        break
    path.append(picked)

d = report(drilldown, v.period, tuple(path), v.filters)
where = " / ".join(f"{lvl} {shown(lvl, val)}" for lvl, val in zip(LEVELS, path, strict=False)) or "every department"
c1, c2, c3, c4 = st.columns(4)
c1.metric("Cost", money(d.total_usd), help=f"{d.total_usd:f} USD exactly ({where})")
c2.metric("Requests", f"{d.requests:,}")
c3.metric("Input tokens", f"{sum(r.input_tokens for r in d.rows):,}")
c4.metric("Output tokens", f"{sum(r.output_tokens for r in d.rows):,}")

if not d.rows:
    st.info("No metered calls here in this month.")
    st.stop()
name = d.level or LEVELS[-1]
data = [
    {"name": shown(name, r.value), "id": r.value if name in ("department", "team") else None, "requests": r.requests,
     "input_tokens": r.input_tokens, "cached_input_tokens": r.cached_input_tokens, "output_tokens": r.output_tokens,
     "reasoning_tokens": r.reasoning_tokens, "tool_calls": r.tool_calls, "cost_usd": r.cost_usd}
    for r in d.rows
]  # fmt: skip
st.subheader(f"By {name}" + (f" in {where}" if path else ""))
tokens = [alt.Tooltip("input_tokens:Q", title="Input tokens", format=","), alt.Tooltip("output_tokens:Q", title="Output tokens", format=",")]
st.altair_chart(ranked_bars(pd.DataFrame(data), "name", TITLES[name], *tokens), width="stretch")
cols = {"name": text_col(TITLES[name], width=170)}
if name in ("department", "team"):
    cols["id"] = text_col("Id", width=90, help="as in the config and the exports")
cols |= {
    "requests": count_col("Requests", width=85),
    "input_tokens": count_col("Input tokens", width=105),
    "cached_input_tokens": count_col("Cached input", width=105, help="input tokens served from the provider's prompt cache"),
    "output_tokens": count_col("Output tokens", width=105),
    "reasoning_tokens": count_col("Reasoning", width=95, help="reasoning tokens: part of the output tokens, on reasoning models"),
    "tool_calls": count_col("Tool calls", width=80),
    "cost_usd": money_col("Cost", width=95),
}
table(data, cols, key="drill_table")
