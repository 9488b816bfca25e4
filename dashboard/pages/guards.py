"""Guards: rate limits' current use against their limits, and spend anomalies (docs/guards.md)."""

from __future__ import annotations

from decimal import Decimal

import streamlit as st

from meterline.dashboard.context import report, view
from meterline.dashboard.format import money, percent_col, table, text_col
from meterline.reports.guards import rate_use, recent_anomalies

METRIC_TEXT = {
    "requests_per_minute": "requests / minute",
    "requests_per_hour": "requests / hour",
    "tokens_per_minute": "tokens / minute",
    "tokens_per_hour": "tokens / hour",
    "usd_per_minute": "USD / minute",
    "usd_per_hour": "USD / hour",
}
HOURS = 7 * 24  # anomalies shown: those that started in the last week

v = view()
st.title("Guards")


def who(scope: str) -> str:
    kind, _, name = scope.partition(":")
    if kind == "team":
        team = v.org.teams.get(name)
        return f"{name} (team, {v.names.department(team.department)})" if team else f"{name} (team)"
    return f"{v.names.department(name)} (department)" if kind == "department" else f"{name} (key)"


def amount(metric: str, x: Decimal) -> str:
    if metric.startswith("usd"):
        return money(x, 2 if x >= 1 or x == 0 else 4)
    return f"{int(x):,}"


st.subheader("Spend anomalies")
st.caption(
    "Hours a team's or key's spend spiked against the same hour on its last 14 days and its busiest hours "
    f"(robust z-score, `alerts:`); the last {HOURS // 24} days, from the ledger."
)
spikes = report(recent_anomalies, v.settings.alerts, v.now, HOURS, settings=v.settings, department=v.department)
going = [s for s in spikes if s["open"]]
c1, c2 = st.columns(2)
c1.metric("Going on now", len(going))
c2.metric(f"In the last {HOURS // 24} days", len(spikes))
for s in going:
    st.warning(f"**{who(s['scope'] + ':' + s['id'])}**: {s['message']}", icon=":material/trending_up:")
if spikes:
    table(
        [
            {"who": who(f"{s['scope']}:{s['id']}"), "start": s["start"].replace("T", " ").replace(":00:00Z", ":00 UTC"),
             "hours": str(s["hours"]), "spend": money(Decimal(s["spend_usd"])), "usual": money(Decimal(s["usual_usd"])), "total": money(Decimal(s["total_usd"])),
             "z": s["z"], "state": "going on" if s["open"] else "over"}
            for s in spikes
        ],  # fmt: skip
        {
            "who": text_col("Team or key", width=190),
            "start": text_col("First hour", width=140),
            "hours": text_col("Hours", width=55),
            "spend": text_col("That hour", width=90),
            "usual": text_col("Usual then", width=90, help="median of the same hour on the last 14 days"),
            "total": text_col("In the spike", width=95),
            "z": text_col("Robust z", width=75),
            "state": text_col("State", width=80),
        },
        key="anomalies_table",
    )
elif not v.settings.alerts.anomalies:
    st.info("No spend anomalies in the ledger. Set `alerts: anomalies: true` to have the proxy check every few minutes and alert.")
else:
    st.success(f"No spend anomalies in the last {HOURS // 24} days.", icon=":material/check_circle:")

st.subheader("Rate limits")
st.caption(
    "Each limit of `limits:` and of keys (admin API) with its use now: the sliding window's count across the "
    "replicas, as they last published it (every `budgets.refresh_seconds`)."
)
uses = report(rate_use, v.settings, v.now, v.department)
if not uses:
    st.info("No rate limits configured: add `limits:` entries for teams or departments, or `limits` on keys (admin API).")
    st.stop()
busy = [u for u in uses if u.used_percent >= 80]
c1, c2 = st.columns(2)
c1.metric("Limits", len(uses))
c2.metric("At 80% or more", len(busy))
for u in busy:
    st.warning(f"**{who(u.scope)}** is at {u.used_percent}% of {amount(u.metric, u.limit)} {METRIC_TEXT[u.metric]}.", icon=":material/speed:")
table(
    [
        {"who": who(u.scope), "metric": METRIC_TEXT[u.metric], "limit": amount(u.metric, u.limit), "used": amount(u.metric, u.used),
         "used_percent": float(u.used_percent), "replicas": str(u.replicas)}
        for u in uses
    ],  # fmt: skip
    {
        "who": text_col("Limit on", width=260),
        "metric": text_col("Per", width=140),
        "limit": text_col("Limit", width=110),
        "used": text_col("In use", width=110),
        "used_percent": percent_col("Used"),
        "replicas": text_col("Replicas counting", width=130),
    },
    key="limits_table",
)
