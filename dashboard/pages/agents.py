"""Agents and tools: what each tool costs with the calls it causes, the largest agent runs, and
every call of a run under the call that made it."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from meterline.dashboard.context import report, view
from meterline.dashboard.format import (
    count_col,
    fine_money_col,
    for_chart,
    money,
    percent_col,
    table,
    text_col,
    usd_axis,
)
from meterline.reports.agents import tool_costs, top_runs
from meterline.reports.agents_view import fan_out_counts, link_summary, tree_rows
from meterline.reports.capped_runs import capped_runs

TOP = 20
ROW = 26  # px per horizontal bar: room for one label each, however many there are
# Streamlit fits a chart's whole height (legend and axis included) into the height it is given
# unless the spec says otherwise: fit the width only, so the height is the bars' own.
FIT_WIDTH = alt.AutoSizeParams(type="fit-x", contains="padding")
TABLE_ROW = 35  # px, a table row in st.dataframe
KINDS = alt.Scale(domain=["llm", "mcp", "embedding"], range=["#4c78a8", "#f58518", "#54a24b"])


def bars_height(n: int) -> int:
    """A horizontal bar chart's plot height for `n` bars (with FIT_WIDTH)."""
    return ROW * n


def count_axis(title: str) -> alt.Axis:
    """Whole numbers only: runs and calls come in ones."""
    return alt.Axis(title=title, format="d", tickMinStep=1)


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
            # Every tool's label: the order is the table's (by total), the height one row each.
            y=alt.Y("tool:N", sort=list(frame["tool"]), title=None, axis=alt.Axis(labelLimit=320, labelOverlap=False)),
            color=alt.Color("part:N", title=None, legend=alt.Legend(orient="top")),
            tooltip=["tool:N", "part:N", alt.Tooltip("calls:Q", format=","), alt.Tooltip("sum(usd):Q", title="USD", format="$,.6f")],
        )
        .properties(height=bars_height(len(frame)), autosize=FIT_WIDTH),
        width="stretch",
    )
    table(frame.to_dict("records"), {
        "tool": text_col("Tool", width="medium"), "calls": count_col("Calls"), "errors": count_col("Errors"),
        "subcalls": count_col("Sub-calls", help="calls made while serving these tool calls, at any depth"),
        "own_usd": fine_money_col("Tool calls", 4), "subcall_usd": fine_money_col("Sub-calls cost", 4),
        "total_usd": fine_money_col("Total", 4),
    }, key="tool_costs")  # fmt: skip

capped = report(capped_runs, v.period, dept)
if capped:
    st.subheader("Runs stopped by their caps")
    st.caption("Refused past a cap of `runs:` (cost, calls, depth, duration, a loop), and every call of theirs since.")
    table([
        {"trace_id": c.trace_id, "team": v.names.team_label(c.team), "capped_at": c.capped_at.strftime("%Y-%m-%d %H:%M"),
         "calls": c.calls, "refused": c.refused, "cost_usd": c.cost_usd, "why": c.why}
        for c in capped
    ], {
        "trace_id": text_col("Trace id", width=110), "team": text_col("Paid by", width=140),
        "capped_at": text_col("Capped (UTC)", width=120), "calls": count_col("Calls", width=55),
        "refused": count_col("Refused", width=65, help="its calls refused since"),
        "cost_usd": fine_money_col("Spent", 4, width=85, help="at most one call past a cost cap"),
        "why": text_col("Why", width=420),
    }, key="capped_runs")  # fmt: skip

runs = report(top_runs, v.period, TOP, dept)
st.subheader(f"Largest agent runs (top {TOP} by cost)")
if not runs:
    st.info(
        "No agent runs in this month: calls join a run by `traceparent`, `X-Meterline-Run`, "
        "or by carrying back what an earlier response produced."
    )
    st.stop()
table([
    {"trace_id": r.trace_id, "team": v.names.team_label(r.team), "started": r.started.strftime("%Y-%m-%d %H:%M"), "calls": r.calls,
     "depth": r.depth, "fan_out": r.fan_out, "seconds": round(r.duration_ms / 1000, 1), "cost_usd": r.cost_usd,
     "links": link_summary(r)}
    for r in runs
], {
    "trace_id": text_col("Trace id", width=110), "team": text_col("Paid by", width=140, help="the root caller's team"),
    "calls": count_col("Calls", width=55),
    "depth": count_col("Depth", width=55), "fan_out": count_col("Fan-out", width=60, help="most calls made by one caller in the run"),
    "seconds": count_col("Seconds", width=65, help="from its first call's start to the end of its last"),
    "cost_usd": fine_money_col("Cost", 4, width=85, help="every call of the run; the exact amount is in the call tree below"),
    "links": text_col("Linked by", width=340, help="calls per link: root (no parent), traceparent, header, continuation, tool_request"),
    "started": text_col("Started (UTC)", width=120),
}, key="top_runs")  # fmt: skip

left, right = st.columns([1, 2])
with left:
    st.markdown("**Fan-out** (most calls made by one caller in a run)")
    fan = pd.DataFrame(fan_out_counts(runs), columns=["fan_out", "runs"])
    st.altair_chart(
        alt.Chart(fan)
        .mark_bar()
        .encode(
            x=alt.X("fan_out:O", title="fan-out", axis=alt.Axis(labelAngle=0)),
            y=alt.Y("runs:Q", axis=count_axis("runs"), scale=alt.Scale(domainMin=0)),
            tooltip=["fan_out", "runs"],
        )
        .properties(height=220),
        width="stretch",
    )
with right:
    st.markdown("**Cost by run** (each run's calls by kind)")
    kinds = pd.DataFrame([
        {"run": f"{r.trace_id[:12]}… {v.names.team_label(r.team)}", "kind": n.kind, "usd": float(n.cost_usd)}
        for r in runs for root in r.roots for n in root.walk()
    ])  # fmt: skip
    order = list(dict.fromkeys(kinds["run"]))
    st.altair_chart(
        alt.Chart(kinds)
        .mark_bar()
        .encode(
            x=alt.X("sum(usd):Q", title="USD", axis=usd_axis(float(max(r.cost_usd for r in runs)))),
            y=alt.Y("run:N", sort=order, title=None, axis=alt.Axis(labelLimit=320, labelOverlap=False)),
            color=alt.Color("kind:N", title=None, scale=KINDS, legend=alt.Legend(orient="top")),
            tooltip=["run:N", "kind:N", alt.Tooltip("sum(usd):Q", title="USD", format="$,.6f")],
        )
        .properties(height=bars_height(len(order)), autosize=FIT_WIDTH),
        width="stretch",
    )

st.subheader("Call tree of a run")
pick = st.selectbox(
    "Run", runs, key="run_pick",
    format_func=lambda r: f"{r.trace_id[:12]}… · {v.names.team_label(r.team)} · {r.calls} calls · {money(r.cost_usd, 4)}",
)  # fmt: skip
c1, c2, c3, c4, c5 = st.columns([1, 1.6, 0.8, 1, 1])
c1.metric("Cost", money(pick.cost_usd, 4), help=f"{pick.cost_usd:f} USD exactly: every call of the run")
c2.metric("Paid by", v.names.team_label(pick.team), help="the root caller's team (chargeback.subcalls)")
c3.metric("Calls", f"{pick.calls:,}", help=f"{pick.llm_calls} LLM calls, {pick.tool_calls} tool calls")
c4.metric("Depth · fan-out", f"{pick.depth} · {pick.fan_out}")
c5.metric("Duration", f"{pick.duration_ms / 1000:,.1f} s")
st.caption(f"Linked by: {link_summary(pick)}")
rows = tree_rows(pick)
table([
    {"n": r.n, "call": r.tree_label, "link": r.link, "own": r.cost_usd, "total": r.total_usd, "share": float(r.share * 100),
     "spawned_by": r.spawned_by, "team": v.names.team_label(r.team), "status": r.status, "call_id": r.call_id}
    for r in rows
], {
    "n": count_col("#", width=40), "call": text_col("Call, under the call that made it", width=240),
    "link": text_col("Link", width=95, help="how it joined the run"),
    "own": fine_money_col("Own cost", width=95), "total": fine_money_col("With sub-calls", width=110),
    "share": percent_col("Share", help="of the run's cost, with its sub-calls"),
    "spawned_by": text_col("Made by", width=140), "team": text_col("Charged to", width=130),
    "status": text_col("Status", width=70), "call_id": text_col("Call id", width=140),
}, key="run_tree", height=TABLE_ROW * (len(rows) + 1) + 3)  # every call, no scrolling  # fmt: skip

# Chart labels are SVG text, which drops repeated spaces: non-breaking ones keep the tree's
# indentation, and left-aligned labels (as wide as the longest, in a fixed-width font) keep
# every call under the one that made it.
calls = pd.DataFrame([
    {"call": f"{r.n:>2}  {r.tree_label}".replace(" ", "\u00a0"), "kind": r.kind, "own": float(r.cost_usd),
     "total": float(r.total_usd), "link": r.link, "spawned_by": r.spawned_by, "label": money(r.cost_usd, 4)}
    for r in rows
])  # fmt: skip
label_px = int(7.3 * max(len(c) for c in calls["call"])) + 12
bars = alt.Chart(calls).encode(
    y=alt.Y("call:N", sort=list(calls["call"]), title=None,
            axis=alt.Axis(labelLimit=label_px, labelOverlap=False, labelFont="monospace", labelFontSize=12,
                          labelAlign="left", labelPadding=label_px)),
)  # fmt: skip
largest = float(calls["own"].max())
st.altair_chart(
    (
        bars.mark_bar().encode(
            x=alt.X("own:Q", title="own cost (USD)", axis=usd_axis(largest), scale=alt.Scale(domain=[0, largest * 1.15])),
            color=alt.Color("kind:N", title=None, scale=KINDS, legend=alt.Legend(orient="top")),
            tooltip=["call:N", "link:N", "spawned_by:N", alt.Tooltip("own:Q", title="own USD", format="$,.6f"),
                     alt.Tooltip("total:Q", title="with sub-calls USD", format="$,.6f")],
        )  # fmt: skip
        + bars.mark_text(align="left", dx=4, fontSize=11).encode(x="own:Q", text="label:N")
    ).properties(height=bars_height(len(calls)), autosize=FIT_WIDTH),
    width="stretch",
)
st.caption("Each call's own cost, in the tree's order: a tool call's sub-calls sit indented under it.")
