"""Chargeback: what each department is billed for the month, the files for finance, closing."""

from __future__ import annotations

from datetime import UTC, datetime

import altair as alt
import pandas as pd
import streamlit as st

from meterline.costing import CostingError
from meterline.dashboard.context import report, view
from meterline.dashboard.format import USD_AXIS, change, fixed, for_chart, money
from meterline.reports import chargeback_report
from meterline.reports.invoice import FILES, chargeback_file, close_month, invoice, lines_of

v = view()
st.title(f"Chargeback · {v.period}")
st.caption("Invoices cover the whole month: the sidebar's team, model, provider and tag filters do not apply here.")
try:
    rep = report(chargeback_report, v.settings, v.period)
except CostingError as e:  # e.g. no exchange rate for the month
    st.error(str(e))
    st.stop()
cb = rep.chargeback
cur = cb.currency
inv = invoice(rep, v.department)
rows = inv.rows

c1, c2, c3, c4 = st.columns(4)
c1.metric("Billed" if cb.closed_at else "Billed so far", money(inv.billed, currency=cur))
c2.metric("Last month", money(inv.previous_billed, currency=cur), delta=change(inv.change_percent), delta_color="inverse")
c3.metric("Forecast to month-end", money(inv.forecast, currency=cur), help="run rate so far; the open current month only")
c4.metric("Month", "closed" if cb.closed_at else "open", help=f"closed {cb.closed_at} UTC" if cb.closed_at else "still changing")

if rows:
    frame = pd.DataFrame([
        {"department": c.name, "cost_center": c.cost_center, "usage": c.cost_usd, "shared_allocated": c.allocated_usd,
         "markup_percent": f"{c.markup_percent:f}", "markup": c.markup_usd, "charge": c.charge_usd, "billed": c.billed,
         "previous_billed": r.previous_billed, "change": change(r.change_percent)}
        for r in rows
        for c in [r.charge]
    ])  # fmt: skip
    st.altair_chart(
        alt.Chart(for_chart(frame.melt(id_vars=["department"], value_vars=["usage", "shared_allocated", "markup"], var_name="part", value_name="usd"), "usd"))
        .mark_bar()
        .encode(
            x=alt.X("sum(usd):Q", title=cur, axis=USD_AXIS if cur == "USD" else alt.Axis(format=",.2f")),
            y=alt.Y("department:N", sort="-x", title=None),
            color=alt.Color("part:N", title=None),
            tooltip=["department:N", "part:N", alt.Tooltip("sum(usd):Q", title=cur, format=",.2f")],
        ),
        width="stretch",
    )
    money_cols = {c: frame[c].map(fixed) for c in ("usage", "shared_allocated", "markup", "charge")}
    st.dataframe(
        frame.assign(**money_cols, billed=frame["billed"].map(lambda x: fixed(x, 2)),
                     previous_billed=frame["previous_billed"].map(lambda x: "" if x is None else fixed(x, 2))),
        hide_index=True,
        width="stretch",
    )
else:
    st.info("Nothing billed in this month.")

st.subheader("Invoice lines")
choices = [r.charge.department for r in rows]
if choices:
    names = {r.charge.department: r.charge.name for r in rows}
    dept = st.selectbox("Department", choices, format_func=lambda d: names[d], key="cb_department")
    lines = lines_of(inv.chargeback, dept)
    st.dataframe(
        pd.DataFrame([
            {"team": ln.team, "project": ln.project, "kind": ln.kind, "provider": ln.provider, "model": ln.model, "tool": ln.tool,
             "requests": ln.requests, "input_tokens": ln.input_tokens, "output_tokens": ln.output_tokens, "tool_calls": ln.tool_calls,
             "cost_usd": fixed(ln.cost_usd), "allocated_usd": fixed(ln.allocated_usd), "markup_usd": fixed(ln.markup_usd),
             "charge_usd": fixed(ln.charge_usd), "adjustment": ln.adjustment, "tags": ln.tags}
            for ln in lines
        ]),  # fmt: skip
        hide_index=True,
        width="stretch",
    )
    if cur != "USD":
        st.caption(f"Amounts in {cur} (the `_usd` column names stay, as in the export).")

st.subheader("Files for finance")
scope = "" if v.department is None else f" (your department's lines only: {v.department})"
st.caption("The same bytes as `meterline export chargeback --month " + v.period + "`" + scope + ".")
d1, d2 = st.columns(2)
for col, fmt, label in ((d1, "csv", "Download CSV"), (d2, "focus", "Download FOCUS")):
    mime, name = FILES[fmt]
    col.download_button(
        label, chargeback_file(cb, fmt, v.department), file_name=name.format(period=v.period), mime=mime, key=f"dl_{fmt}"
    )

if v.viewer.admin and cb.closed_at is None:
    st.subheader("Close the month")
    current = datetime.now(UTC).strftime("%Y-%m")
    if v.period >= current:
        st.caption(f"{v.period} has not ended yet; it can be closed from {v.period} + 1 month on.")
    else:
        sure = st.checkbox(f"Freeze {v.period}: its chargeback becomes final; later usage is billed as adjustments next month.", key="close_sure")
        if st.button(f"Close {v.period}", disabled=not sure, key="close_month"):
            try:
                done = close_month(v.engine, v.settings, v.period)
            except CostingError as e:
                st.error(str(e))
            else:
                st.cache_data.clear()
                st.success(f"Closed {v.period}: {len(done.lines)} lines, {money(done.total, currency=done.currency)} billed.")
elif cb.closed_at:
    st.caption(f"Closed {cb.closed_at} UTC: this chargeback is final.")
