"""What every page needs: the ledger, who is looking, the month and the filters.

Each page starts with `view()`, which signs the viewer in and lays out the sidebar.
Report calls go through `report(...)`, cached for a short while so moving between pages and
widgets does not re-read the ledger each time; the cache key holds the ledger, the month and
the (already department-limited) filters, so viewers never share another scope's results.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import sqlalchemy as sa
import streamlit as st

from meterline.costing import ConfigError, Org, Settings, create_engine, load_settings
from meterline.costing.config import config_location
from meterline.reports.filters import Filters
from meterline.reports.ledger_queries import distinct_values, periods_with_usage

from . import auth
from .auth import Viewer

VIEW_KEY = "meterline_view"
CACHE_SECONDS = 30
T = TypeVar("T")


@dataclass(frozen=True)
class View:
    settings: Settings
    engine: sa.Engine
    org: Org
    period: str
    filters: Filters  # limited to the viewer's department
    viewer: Viewer

    @property
    def department(self) -> str | None:
        """The department every report is limited to (the viewer's), if any."""
        return self.viewer.department


def config_path() -> str | None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config")
    args, _ = parser.parse_known_args(sys.argv[1:])
    return args.config


@st.cache_resource
def ledger(config: str) -> tuple[Settings, sa.Engine]:
    """The settings and ledger engine of a config file (by its resolved path)."""
    s = load_settings(config)
    return s, create_engine(s.database)


def view() -> View:
    """The view of this run, for the page script calling it: signs the viewer in if needed
    (or stops the run), then lays out the sidebar's month and filters. Pages call it first:
    each page is self-contained, so it is guarded even when run on its own."""
    try:
        settings, engine = ledger(str(config_location(config_path()).resolve()))
    except ConfigError as e:
        st.error(f"Cannot read the config: {e}")
        st.stop()
    viewer = auth.current(settings.dashboard)
    if viewer is None:
        st.stop()
    period, filters = sidebar_filters(settings, engine, viewer)
    st.sidebar.divider()
    st.sidebar.caption(f"Signed in as **{viewer.name}** ({viewer.scope}{', admin' if viewer.admin else ''})")
    if st.sidebar.button("Sign out", key="sign_out"):
        auth.sign_out()
        st.rerun()
    v = View(settings, engine, Org(settings), period, filters, viewer)
    st.session_state[VIEW_KEY] = v  # for report() within this run
    return v


@st.cache_data(ttl=CACHE_SECONDS, show_spinner=False, max_entries=500)
def _cached(key: str, _call: Callable[[], Any]) -> Any:
    return _call()


def report(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`fn(engine, *args, **kwargs)` for this run's view, cached by its arguments."""
    v: View = st.session_state[VIEW_KEY]
    # Settings and Org stand for the config already named by its path in the key.
    parts = tuple("<config>" if isinstance(a, Settings | Org) else a for a in args)
    # A string key: Streamlit's hasher does not look inside dataclasses such as Filters.
    key = repr((fn.__module__, fn.__qualname__, v.settings.path, v.settings.database, parts, sorted(kwargs.items())))
    return _cached(key, lambda: fn(v.engine, *args, **kwargs))


@st.cache_data(ttl=CACHE_SECONDS, show_spinner=False, max_entries=100)
def _options(_engine: sa.Engine, db: str, period: str, where: dict[str, Any] | None) -> dict[str, list[str]]:
    """Filter choices of a month (`db`, the ledger's URL, keys the cache with the rest)."""
    return distinct_values(_engine, period, ["department", "team", "model", "provider"], where)


def _months(engine: sa.Engine) -> list[str]:
    current = datetime.now(UTC).strftime("%Y-%m")
    return sorted({current, *periods_with_usage(engine)}, reverse=True)


def sidebar_filters(settings: Settings, engine: sa.Engine, viewer: Viewer) -> tuple[str, Filters]:
    """The month and filters picked in the sidebar, limited to what the viewer may see."""
    sb = st.sidebar
    months = _months(engine)
    period = sb.selectbox("Month", months, index=0, key="f_month")
    limit = {"department": viewer.department} if viewer.department else None
    db = str(engine.url)  # password hidden: the same ledger either way
    seen = _options(engine, db, period, limit)
    if viewer.department is None:
        departments = tuple(sb.multiselect("Department", seen["department"], key="f_department"))
    else:
        departments = (viewer.department,)
        sb.caption(f"Department: **{viewer.department}** (your view is limited to it)")
    team_options = seen["team"]
    if len(departments) == 1 and viewer.department is None:
        team_options = _options(engine, db, period, {"department": departments[0]})["team"]
    teams = tuple(sb.multiselect("Team", team_options, key="f_team"))
    models = tuple(sb.multiselect("Model", [m for m in seen["model"] if m], key="f_model"))
    providers = tuple(sb.multiselect("Provider", [p for p in seen["provider"] if p], key="f_provider"))
    raw_tags = sb.text_input("Tags", key="f_tags", placeholder="env=prod, feature=search", help="k=v pairs a call must all carry")
    tags = tuple(t.strip() for t in raw_tags.split(",") if "=" in t)
    filters = Filters(departments, teams, models, providers, tags).within(viewer.department)
    return period, filters


__all__ = ["View", "config_path", "ledger", "report", "sidebar_filters", "view"]
