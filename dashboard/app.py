"""Meterline dashboard entry point (`meterline dashboard`, or `streamlit run dashboard/app.py -- --config C`)."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

import altair as alt
import pandas as pd
import streamlit as st

from costing import Org, create_engine, load_settings
from reports import showback


def _config_path() -> str | None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config")
    args, _ = parser.parse_known_args(sys.argv[1:])
    return args.config


@st.cache_resource
def _ledger(config: str | None):  # type: ignore[no-untyped-def]
    s = load_settings(config)
    return s, create_engine(s.database)


def main() -> None:
    st.set_page_config(page_title="Meterline", layout="wide")
    settings, engine = _ledger(_config_path())
    st.title("AI spend")
    period = st.text_input("Month", datetime.now(UTC).strftime("%Y-%m"), key="month")
    sb = showback(engine, Org(settings), period)
    st.metric("Month to date (USD)", f"${sb.total_usd:,.2f}", help=f"{sb.requests:,} requests")
    rows = [
        {"department": d.name, "team": t.team, "requests": t.requests, "cost_usd": t.cost_usd}
        for d in sb.departments
        for t in d.teams
    ]
    if not rows:
        st.info("No metered calls in this month yet.")
        return
    frame = pd.DataFrame(rows)
    chart_frame = frame.assign(cost=frame["cost_usd"].astype(float))  # charts only; tables keep Decimal
    st.altair_chart(
        alt.Chart(chart_frame)
        .mark_bar()
        .encode(
            x=alt.X("cost:Q", title="USD", axis=alt.Axis(format="$,.2f")),
            y=alt.Y("department:N", sort="-x"),
            color="team:N",
            tooltip=["department", "team", "requests", alt.Tooltip("cost:Q", format="$,.6f")],
        ),
        use_container_width=True,
    )
    st.dataframe(frame.assign(cost_usd=frame["cost_usd"].map(lambda v: f"{v:.6f}")), hide_index=True)


main()
