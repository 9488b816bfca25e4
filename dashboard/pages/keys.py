"""Keys: every virtual key with its team, project, age, expiry and rotation, and what it spent
this month. Never a secret: keys are named by their id and visible prefix only."""

from __future__ import annotations

from decimal import Decimal

import streamlit as st

from meterline.dashboard.context import view
from meterline.dashboard.format import money, money_col, table, text_col
from meterline.reports.keys_view import EXPIRING_DAYS, KeyRow, key_rows

v = view()
st.title(f"Keys · {v.period}")
st.caption("Virtual keys as `meterline keys list` and `GET /admin/keys` show them: spend is this month's, "
           "expiry and rotation as of now. Secrets are never shown.")  # fmt: skip
# Read on every run, not cached: a key made or revoked a moment ago shows at once.
rows = key_rows(v.engine, v.org, v.period, department=v.department, now=v.now)
if not rows:
    st.info("No keys yet: `meterline keys create --team TEAM` or `POST /admin/keys` makes one.")
    st.stop()

active = [r for r in rows if r.status == "active"]
expiring = [r for r in active if r.expiring]
c1, c2, c3, c4 = st.columns(4)
c1.metric("Active keys", f"{len(active):,}")
c2.metric(f"Expiring within {EXPIRING_DAYS} days", f"{len(expiring):,}")
c3.metric("Expired or revoked", f"{len(rows) - len(active):,}")
c4.metric("Spent by keys this month", money(sum((r.spend_usd for r in rows), Decimal(0))))
for r in expiring:
    st.warning(f"Key **{r.name or r.id}** of team {v.names.team(r.team)} {r.expiry} ({r.expires_at:%Y-%m-%d %H:%M} UTC).", icon=":material/schedule:")


def rotation(r: KeyRow) -> str:
    return f"old secret valid until {r.grace_until:%Y-%m-%d %H:%M} UTC" if r.grace_until else "–"


data = [
    {
        "name": r.name or "(unnamed)",
        "team": v.names.team(r.team),
        "department": v.names.department(r.department) if r.department else "–",
        "project": r.project or "–",
        "status": r.status,
        "expiry": f"{r.expiry} ({r.expires_at:%Y-%m-%d})" if r.expires_at else r.expiry,
        "spend_usd": r.spend_usd,
        "budget_usd": r.budget_usd,
        "rotation": rotation(r),
        "created": f"{r.created_at:%Y-%m-%d}",
        "key": f"{r.id} · {r.prefix}…",
    }
    for r in rows
]
# The columns people scan first on the left, so they fit the page at 1400 px.
table(
    data,
    {
        "name": text_col("Name", width=150),
        "team": text_col("Team", width=100),
        "department": text_col("Department", width=110),
        "project": text_col("Project", width=100),
        "status": text_col("Status", width=80),
        "expiry": text_col("Expiry", width=220),
        "spend_usd": money_col("Spent this month", width=125),
        "budget_usd": money_col("Budget / month", width=115),
        "rotation": text_col("Rotation grace", width=260),
        "created": text_col("Created", width=95),
        "key": text_col("Key (id · prefix)", width=250, help="the key's id and the first characters of its secret, as listings show it"),
    },
    key="keys",
)
