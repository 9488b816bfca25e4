"""Credits: balances and burn-down per grant, the day each is forecast to run out, grants
about to expire, credit alerts, and what rate cards do to this month's charge."""

from __future__ import annotations

from decimal import Decimal

import altair as alt
import pandas as pd
import streamlit as st

from meterline.dashboard.context import report, view
from meterline.dashboard.format import exact_tooltip, money, money_col, table, text_col, usd_axis
from meterline.reports.credits_report import EXPIRING_DAYS, credits_view

v = view()
st.title(f"Credits · {v.period}")
data = report(credits_view, v.settings, v.now, department=v.department)
if not data.grants and not data.rate_cards:
    st.info("No credit grants count now and no rate cards are configured: see `credits:` and `rate_cards:`.")
    st.stop()


def owner(g) -> str:
    return f"{g.owner} (team, {v.names.department(g.department)})" if g.scope == "team" else f"{v.names.department(g.owner)} (department)"


c1, c2, c3 = st.columns(3)
c1.metric("Grants counting now", len(data.grants))
c2.metric("Balance", money(sum((g.balance_usd for g in data.grants), start=Decimal(0))))
c3.metric(f"Ending within {EXPIRING_DAYS} days", len(data.expiring))
for g in data.expiring:
    st.warning(f"**{g.id}** of {owner(g)} ends on {g.ends:%Y-%m-%d %H:%M} UTC with {money(g.balance_usd)} left.", icon=":material/schedule:")
for when, message in data.alerts:
    st.warning(f"{when} UTC: {message}", icon=":material/notifications:")

if data.grants:
    table(
        [
            {"id": g.id, "owner": owner(g), "granted": g.granted_usd, "drawn": g.drawn_usd, "balance": g.balance_usd,
             "ends": f"{g.ends:%Y-%m-%d}" if g.ends else None, "run_out": g.run_out.isoformat() if g.run_out else None}
            for g in data.grants
        ],  # fmt: skip
        {
            "id": text_col("Grant", width=160),
            "owner": text_col("Drawn by", width=240),
            "granted": money_col("Granted", help="this month's amount of a recurring grant, its rollover included"),
            "drawn": money_col("Drawn"),
            "balance": money_col("Balance"),
            "ends": text_col("Ends", width=110),
            "run_out": text_col("Runs out", width=110, help="at the last week's rate of draw, if before it ends"),
        },
        key="credits_table",
    )
    st.subheader("Burn-down")
    ids = [g.id for g in data.grants]
    if st.session_state.get("burn_grant") not in ids:
        st.session_state["burn_grant"] = ids[0]
    picked = st.selectbox("Grant", ids, key="burn_grant")
    pick = next(g for g in data.grants if g.id == picked)
    lines = [{"day": d.isoformat(), "usd": float(x), "what": "balance"} for d, x in pick.burn]
    if pick.run_out is not None and pick.burn:
        last_day, last = pick.burn[-1]
        lines += [{"day": last_day.isoformat(), "usd": float(last), "what": "forecast"},
                  {"day": pick.run_out.isoformat(), "usd": 0.0, "what": "forecast"}]  # fmt: skip
    frame = pd.DataFrame(lines)
    top = max(float(pick.granted_usd), float(frame["usd"].max() if len(frame) else 0)) * 1.1 or 1.0
    st.altair_chart(
        alt.Chart(frame)
        .mark_line(point=True)
        .encode(
            x=alt.X("day:T", title=None, axis=alt.Axis(format="%b %d", labelOverlap=True)),
            y=alt.Y("usd:Q", title="Balance (USD)", axis=usd_axis(top), scale=alt.Scale(domain=[0, top])),
            color=alt.Color("what:N", scale=alt.Scale(domain=["balance", "forecast"], range=["#1f77b4", "#1f77b4"]),
                            legend=alt.Legend(title=None, orient="bottom", symbolType="stroke")),
            strokeDash=alt.StrokeDash("what:N", scale=alt.Scale(domain=["balance", "forecast"], range=[[1, 0], [6, 4]]), legend=None),
            tooltip=[alt.Tooltip("day:T", title="Day", format="%Y-%m-%d"), alt.Tooltip("what:N", title="Line"), exact_tooltip("usd", "Balance (USD)")],
        ),  # fmt: skip
        width="stretch",
    )
    st.caption(
        f"Runs out on {pick.run_out:%Y-%m-%d} at the last week's rate." if pick.run_out
        else "Not forecast to run out before it ends (or no draw in the last week)."
    )

if data.rate_cards:
    st.subheader("Rate cards this month")
    table(
        [
            {"department": v.names.department(r.department), "cost": r.cost_usd, "rated": r.rated_usd,
             "effect": r.rated_usd - r.cost_usd, "shortfall": r.shortfall_usd}
            for r in data.rate_cards
        ],  # fmt: skip
        {
            "department": text_col("Department", width=200),
            "cost": money_col("Cost", help="what the usage its cards price cost"),
            "rated": money_col("At the card"),
            "effect": money_col("Effect", help="the card's charge less the cost"),
            "shortfall": money_col("Commitment shortfall"),
        },
        key="rate_cards_table",
    )
