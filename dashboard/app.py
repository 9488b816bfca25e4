"""Meterline dashboard entry point (`meterline dashboard`, or `streamlit run dashboard/app.py -- --config C`).

Signs the viewer in, then runs the chosen page (each page signs in too and lays out the
sidebar's month and filters through `dashboard.context.view()`, so no page is open on its own).
Pages only lay out what `reports` computes: no SQL and no cost math here.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import streamlit as st

from meterline.costing import ConfigError
from meterline.costing.config import config_location
from meterline.dashboard import auth
from meterline.dashboard.context import config_path, ledger

PAGES = Path(__file__).with_name("pages")
WANTED_KEY = "meterline_wanted_page"


def main() -> None:
    st.set_page_config(page_title="Meterline", page_icon=":material/insights:", layout="wide")
    try:
        settings, _ = ledger(str(config_location(config_path()).resolve()))
    except ConfigError as e:
        st.error(f"Cannot read the config: {e}")
        st.stop()
    pages = [
        st.Page(str(PAGES / "overview.py"), title="Overview", icon=":material/insights:", default=True),
        st.Page(str(PAGES / "departments.py"), title="Departments", icon=":material/apartment:"),
        st.Page(str(PAGES / "agents.py"), title="Agents and tools", icon=":material/smart_toy:"),
        st.Page(str(PAGES / "budgets.py"), title="Budgets", icon=":material/savings:"),
        st.Page(str(PAGES / "credits.py"), title="Credits", icon=":material/redeem:"),
        st.Page(str(PAGES / "chargeback.py"), title="Chargeback", icon=":material/receipt_long:"),
        st.Page(str(PAGES / "guards.py"), title="Guards", icon=":material/shield:"),
        st.Page(str(PAGES / "keys.py"), title="Keys", icon=":material/key:"),
    ]
    if not auth.signed_in(settings.dashboard):
        # A link to /budgets?month=... must land there once signed in: remember the page
        # asked for (the URL's month and filters stay in the URL meanwhile).
        st.session_state.setdefault(WANTED_KEY, _asked_for())
        if auth.current(settings.dashboard) is None:  # no navigation before signing in
            st.stop()
    nav = st.navigation(pages)
    wanted = st.session_state.pop(WANTED_KEY, "")
    target = next((p for p in pages if p.url_path == wanted), None)
    if target is not None and target is not pages[0]:
        kept = [(k, v) for k in st.query_params for v in st.query_params.get_all(k)]
        st.switch_page(target, query_params=kept)
    nav.run()  # each page calls dashboard.context.view() first


def _asked_for() -> str:
    """The page part of the URL the viewer opened ("budgets"), "" for the root."""
    try:
        url = st.context.url or ""
    except (AttributeError, RuntimeError):
        return ""
    return urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1]


main()
