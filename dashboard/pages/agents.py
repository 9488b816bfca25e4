"""Agents and tools: what each tool costs with the calls it causes, the largest agent runs."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from meterline.dashboard.context import report, view
from meterline.dashboard.format import (
    bar_height,
    count_col,
    for_chart,
    money,
    money_col,
    table,
    text_col,
    usd_axis,
    usd_tooltip,
)
from meterline.reports.agents import tool_costs, top_runs
from meterline.reports.agents_view import fan_out_counts, icicle

TOP = 20
v = view()
st.title(f"Agents and tools · {v.period}")
st.caption("Read from the month's call trees; of the sidebar filters, only the department applies here.")
dept = v.filters.department if v.filters.departments else None

tools = report(tool_costs, v.period, dept)
st.subheader("Cost per tool")
if not tools:
    st.info("No MCP tool calls in this month.")
else:
    frame = pd.DataFrame([
        {"tool": f"{t.server}/{t.tool}", "calls": t.calls, "errors": t.errors, "subcalls": t.subcalls,
         "own_usd": t.own_usd, "subcall_usd": t.subcall_usd, "total_usd": t.total_usd}
        for t in tools
    ])  # fmt: skip
    parts = for_chart(frame, "own_usd", "subcall_usd").melt(
        id_vars=["tool", "calls"], value_vars=["own_usd", "subcall_usd"], var_name="part", value_name="usd"
    )
    st.altair_chart(
        alt.Chart(parts.assign(part=parts["part"].map({"own_usd": "the tool call", "subcall_usd": "its sub-calls"})))
        .mark_bar()
        .encode(
            x=alt.X("sum(usd):Q", title="USD", axis=usd_axis(float(frame["total_usd"].max()))),
            y=alt.Y("tool:N", sort="-x", title=None, axis=alt.Axis(labelLimit=260, labelOverlap=False)),
            color=alt.Color("part:N", title=None),
            tooltip=["tool:N", "part:N", alt.Tooltip("calls:Q", format=","), alt.Tooltip("sum(usd):Q", title="USD", format="$,.4f")],
        )
        .properties(height=bar_height(28)),
        width="stretch",
    )
    table(frame.to_dict("records"), {
        "tool": text_col("Tool", width="medium"), "calls": count_col("Calls"), "errors": count_col("Errors"),
        "subcalls": count_col("Sub-calls", help="LLM calls the tool made while serving these calls"),
        "own_usd": money_col("Tool calls"), "subcall_usd": money_col("Sub-calls cost"), "total_usd": money_col("Total"),
    }, key="tool_costs")  # fmt: skip

runs = report(top_runs, v.period, TOP, dept)
st.subheader(f"Largest agent runs (top {TOP} by cost)")
if not runs:
    st.info("No agent runs in this month: calls share a run when they carry one `traceparent`.")
    st.stop()
table([
    {"trace_id": r.trace_id, "team": v.names.team_label(r.team), "started": r.started.strftime("%Y-%m-%d %H:%M"), "calls": r.calls,
     "tool_calls": r.tool_calls, "llm_calls": r.llm_calls, "depth": r.depth, "fan_out": r.fan_out, "cost_usd": r.cost_usd}
    for r in runs
], {
    "trace_id": text_col("Trace id", width=150), "team": text_col("Team", width=190), "started": text_col("Started (UTC)", width=130),
    "calls": count_col("Calls", width=70), "tool_calls": count_col("Tool calls", width=80), "llm_calls": count_col("LLM calls", width=80),
    "depth": count_col("Depth", width=65), "fan_out": count_col("Fan-out", width=70, help="most calls made by one caller in the run"),
    "cost_usd": money_col("Cost", width=90),
}, key="top_runs")  # fmt: skip

left, right = st.columns([1, 2])
with left:
    st.markdown("**Fan-out** (most calls made by one caller in a run)")
    fan = pd.DataFrame(fan_out_counts(runs), columns=["fan_out", "runs"])
    st.altair_chart(
        alt.Chart(fan).mark_bar().encode(
            x=alt.X("fan_out:O", title="fan-out"), y=alt.Y("runs:Q", title="runs"), tooltip=["fan_out", "runs"]
        ),
        width="stretch",
    )
with right:
    pick = st.selectbox(
        "Call tree of run", runs, key="run_pick",
        format_func=lambda r: f"{r.trace_id[:12]}… · {r.team} · {r.calls} calls · {money(r.cost_usd, 4)}",
    )  # fmt: skip
    cells = pd.DataFrame([
        {"label": c.label, "depth": c.depth, "x0": float(c.x0), "x1": float(c.x1), "kind": c.kind, "status": c.status,
         "own": float(c.cost_usd), "total": float(c.total_usd)}
        for c in icicle(pick)
    ])  # fmt: skip
    boxes = alt.Chart(cells.assign(y0=cells["depth"], y1=cells["depth"] + 1, xm=(cells["x0"] + cells["x1"]) / 2, ym=cells["depth"] + 0.5))
    names = boxes.transform_filter("datum.x1 - datum.x0 > 0.12").mark_text(color="white", fontSize=11).encode(
        x="xm:Q", y="ym:Q", text="label:N"
    )
    st.altair_chart(
        boxes.mark_rect(stroke="white")
        .encode(
            x=alt.X("x0:Q", axis=None, scale=alt.Scale(domain=[0, 1])),
            x2="x1:Q",
            y=alt.Y("y0:Q", axis=alt.Axis(title="depth", tickMinStep=1), scale=alt.Scale(reverse=True)),
            y2="y1:Q",
            color=alt.Color("kind:N", title=None),
            tooltip=["label:N", "status:N", "depth:Q", usd_tooltip("own", "own USD"), usd_tooltip("total", "with sub-calls USD")],
        )
        .properties(height=60 * (int(cells["depth"].max()) + 1))
        + names,
        width="stretch",
    )
    st.caption("Icicle: each call's width is its share of the run's cost; its sub-calls sit below it.")
