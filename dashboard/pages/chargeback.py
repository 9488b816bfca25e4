"""Chargeback: what each department is billed for the month, the files for finance, closing."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from meterline.costing import CostingError, close_period, previous_period
from meterline.dashboard.context import report, view
from meterline.dashboard.format import (
    bar_height,
    change,
    count_col,
    exact_tooltip,
    for_chart,
    money,
    money_col,
    percent_col,
    table,
    text_col,
    usd_axis,
)
from meterline.reports import chargeback_report
from meterline.reports.focus_dimensions import line_parts
from meterline.reports.invoice import FILES, chargeback_file, invoice, lines_of
from meterline.reports.statement import pdf_download

v = view()
st.title(f"Chargeback · {v.period}")
st.caption("Invoices cover the whole month: the sidebar's team, model, provider and tag filters do not apply here.")
try:
    rep = report(chargeback_report, v.settings, v.period, now=v.now)
except CostingError as e:  # e.g. no exchange rate for the month
    st.error(str(e))
    st.stop()
cb = rep.chargeback
cur = cb.currency
inv = invoice(rep, v.department, now=v.now)
rows = inv.rows

month = v.month
state = "closed" if cb.closed_at else ("open" if month.is_open else "ended, not closed")
state_help = (f"closed {cb.closed_at} UTC: final" if cb.closed_at else
              "still changing" if month.is_open else "over, but late usage still lands in it until it is closed")  # fmt: skip
c1, c2, c3, c4 = st.columns(4)
c1.metric(month.billed_label, money(inv.billed, currency=cur), help=f"{inv.billed:f} {cur}")
# An open month so far is not compared with the whole of the month before: no change until it ends.
c2.metric("Last month", money(inv.previous_billed, currency=cur), delta=None if month.is_open else change(inv.change_percent),
          delta_color="inverse", help=f"billed in {previous_period(v.period)}, the whole month" + (
              "; the change is shown once this month has ended" if month.is_open else "; the change is against it"))  # fmt: skip
c3.metric("Forecast to month-end", money(inv.forecast, currency=cur), help="run rate so far, for the open month from its 8th day")
c4.metric("Month", state, help=state_help)

if rows:
    data = sorted((
        {"department": v.names.with_id(c.name, c.department), "cost_center": c.cost_center, "usage": c.cost_usd,
         "shared_allocated": c.allocated_usd, "markup_percent": float(c.markup_percent), "markup": c.markup_usd,
         "charge": c.charge_usd, "billed": c.billed, "previous_billed": r.previous_billed,
         "change": None if r.change_percent is None else float(r.change_percent)}
        for r in rows
        for c in [r.charge]
    ), key=lambda d: str(d["department"]).casefold())  # fmt: skip
    frame = pd.DataFrame(data)
    parts = for_chart(frame.melt(id_vars=["department"], value_vars=["usage", "shared_allocated", "markup"], var_name="part", value_name="usd"), "usd")
    parts["part"] = parts["part"].map({"usage": "Usage", "shared_allocated": "Shared costs", "markup": "Markup"})
    largest = float(frame["charge"].map(float).max())
    st.altair_chart(
        alt.Chart(parts)
        .mark_bar()
        .encode(
            x=alt.X("sum(usd):Q", title=f"Charge ({cur})", axis=usd_axis(largest) if cur == "USD" else alt.Axis(format=",.2f", tickCount=5)),
            y=alt.Y("department:N", sort="-x", title=None, axis=alt.Axis(labelLimit=260, labelOverlap=False)),
            color=alt.Color("part:N", title=None, sort=["Usage", "Shared costs", "Markup"], legend=alt.Legend(orient="bottom")),
            tooltip=[alt.Tooltip("department:N", title="Department"), alt.Tooltip("part:N", title="Part"),
                     exact_tooltip("sum(usd)", cur)],
        )  # fmt: skip
        .properties(height=bar_height(30)),
        width="stretch",
    )
    prev = f"Billed {previous_period(v.period)}"
    table(data, {
        "department": text_col("Department", width=185),
        "cost_center": text_col("Cost center", width=95),
        "usage": money_col("Usage", cur, width=90),
        "shared_allocated": money_col("Shared costs", cur, width=105,
                                      help="Shared costs allocated by `chargeback.allocation`; exact amounts in the CSV."),
        "markup_percent": percent_col("Markup rate"),
        "markup": money_col("Markup", cur, width=85),
        "billed": money_col(month.billed_label, cur),
        "previous_billed": money_col(prev, cur, width=110),
        **({} if month.is_open else {"change": percent_col("Change", help="against the month before; – when it billed nothing")}),
    }, key="cb_departments")  # fmt: skip
else:
    st.info("Nothing billed in this month.")

st.subheader("Invoice lines")
names = {r.charge.department: r.charge.name for r in rows}
choices = sorted(names, key=lambda d: (names[d].casefold(), d))
if choices:
    if st.session_state.get("cb_department") not in choices:
        st.session_state["cb_department"] = choices[0]
    dept = st.selectbox("Department", choices, format_func=lambda d: names[d], key="cb_department")
    lines = lines_of(inv.chargeback, dept)  # in the export's order
    late = any(ln.adjustment for ln in lines)
    table([
        {"team": v.names.team(ln.team) + (f" / {ln.project}" if ln.project else ""),
         "what": ln.model or ln.tool or None, "requests": ln.requests, "input_tokens": ln.input_tokens,
         "output_tokens": ln.output_tokens, "cost_usd": ln.cost_usd, "allocated_usd": ln.allocated_usd,
         "markup_usd": ln.markup_usd, "charge_usd": ln.charge_usd, "adjustment": "late usage" if ln.adjustment else None}
        for ln in lines
    ], {
        "team": text_col("Team / project", width=220), "what": text_col("Model or tool", width=150),
        "requests": count_col("Requests", width=75), "input_tokens": count_col("Input tokens", width=95),
        "output_tokens": count_col("Output tokens", width=95), "cost_usd": money_col("Usage", cur, width=80),
        "allocated_usd": money_col("Shared", cur, width=70), "markup_usd": money_col("Markup", cur, width=65),
        "charge_usd": money_col("Charge", cur, width=80),
        **({"adjustment": text_col("Adjustment", width=95, help="usage of a closed month, billed here")} if late else {}),
    }, key="cb_lines")  # fmt: skip
    pdf_name, make_pdf = pdf_download(v.engine, v.settings, v.period, dept, now=v.now)
    st.download_button(
        f"Download {names[dept]}'s statement (PDF)", make_pdf, file_name=pdf_name, mime="application/pdf", key="dl_statement",
        help="as `meterline export statement`: the printable monthly statement to send the department",
    )

st.subheader("Files for finance")
scope = "" if v.department is None else f" (your department's lines only: {v.department})"
st.caption("The same bytes as `meterline export chargeback --month " + v.period + "`" + scope + ".")
d1, d2 = st.columns(2)
parts = report(line_parts, v.period)  # FOCUS: a row per SKU for lines billed beyond text, as the export
for col, fmt, label in ((d1, "csv", "Download CSV"), (d2, "focus", "Download FOCUS")):
    mime, name = FILES[fmt]
    col.download_button(
        label, chargeback_file(cb, fmt, v.department, parts), file_name=name.format(period=v.period), mime=mime, key=f"dl_{fmt}"
    )

if v.viewer.admin and cb.closed_at is None:
    st.subheader("Close the month")
    if not month.ended:
        st.caption(f"{v.period} has not ended yet; it can be closed from {month.closable_from}.")
    else:
        sure = st.checkbox(f"Freeze {v.period}: its chargeback becomes final; later usage is billed as adjustments next month.", key="close_sure")
        if st.button(f"Close {v.period}", disabled=not sure, key="close_month"):
            try:
                done = close_period(v.engine, v.settings, v.period, now=v.now)
            except CostingError as e:
                st.error(str(e))
            else:
                st.cache_data.clear()
                st.success(f"Closed {v.period}: {len(done.lines)} lines, {money(done.total, currency=done.currency)} billed.")
elif cb.closed_at:
    st.caption(f"Closed {cb.closed_at} UTC: this chargeback is final.")
