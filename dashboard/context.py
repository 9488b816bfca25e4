"""What every page needs: the ledger, who is looking, the month and the filters.

The month and the filters live in the URL (`?month=2026-11&department=research&team=nlp`), so
a view can be linked and survives moving between pages and signing in: each run reads them
from `st.query_params` for widgets not yet set, and writes back what the widgets hold.

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

from meterline.costing import ConfigError, Org, Settings, create_engine, load_settings, period_of
from meterline.costing.config import config_location
from meterline.reports.filters import Filters
from meterline.reports.labels import Month, Names, default_month
from meterline.reports.ledger_queries import distinct_values, periods_with_usage

from . import auth
from .auth import Viewer

VIEW_KEY = "meterline_view"
CACHE_SECONDS = 30
T = TypeVar("T")


# Widget key -> URL parameter, in the sidebar's order.
PARAMS = {"f_month": "month", "f_department": "department", "f_team": "team", "f_model": "model",
          "f_provider": "provider", "f_tags": "tags"}  # fmt: skip


@dataclass(frozen=True)
class View:
    settings: Settings
    engine: sa.Engine
    org: Org
    period: str
    filters: Filters  # limited to the viewer's department
    viewer: Viewer
    now: datetime
    names: Names

    @property
    def month(self) -> Month:
        return Month(self.period, self.now)

    @property
    def department(self) -> str | None:
        """The department every report is limited to (the viewer's), if any."""
        return self.viewer.department


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config")
    parser.add_argument("--now")  # the demo's clock seam: the dashboard sees the month at this time
    args, _ = parser.parse_known_args(sys.argv[1:])
    return args


def config_path() -> str | None:
    return _args().config


def now() -> datetime:
    """The time the pages are seen at: `--now` (ISO 8601, UTC when no offset), else the clock."""
    given = _args().now
    if not given:
        return datetime.now(UTC)
    t = datetime.fromisoformat(given)
    return t if t.tzinfo else t.replace(tzinfo=UTC)


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
    at = now()
    org = Org(settings)
    names = Names.of(org)
    period, filters = sidebar_filters(settings, engine, viewer, names, at)
    st.sidebar.divider()
    scope = "all departments" if viewer.department is None else names.department(viewer.department)
    st.sidebar.caption(f"Signed in as **{viewer.name}** ({scope}{', admin' if viewer.admin else ''})")
    if st.sidebar.button("Sign out", key="sign_out"):
        auth.sign_out()
        st.rerun()
    v = View(settings, engine, org, period, filters, viewer, at, names)
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


def _months(engine: sa.Engine, at: datetime) -> list[str]:
    return sorted({period_of(at), *(p for p in periods_with_usage(engine) if p <= period_of(at))}, reverse=True)


def _restore(key: str, parse: Callable[[list[str]], Any]) -> bool:
    """Give widget `key` its value before it is drawn: the one it had on the page before
    (Streamlit forgets a widget's value when another page draws it), else the URL's.
    True when a value was given (not the default)."""
    state = st.session_state
    if key in state:
        state[key] = state[key]  # keeps the value across pages (Streamlit's documented idiom)
        return True
    given = st.query_params.get_all(PARAMS[key])
    value = parse(given) if given else None
    if value is None:
        return False
    state[key] = value
    return True


def _publish(values: dict[str, Any]) -> None:
    """Write the sidebar's choices into the URL (only what changed, so no extra reruns)."""
    qp = st.query_params
    for key, value in values.items():
        param = PARAMS[key]
        listed = list(value) if isinstance(value, list | tuple) else ([value] if value else [])
        if qp.get_all(param) != listed:
            if listed:
                qp[param] = listed if len(listed) > 1 else listed[0]
            elif param in qp:
                del qp[param]


def sidebar_filters(
    settings: Settings, engine: sa.Engine, viewer: Viewer, names: Names | None = None, at: datetime | None = None
) -> tuple[str, Filters]:
    """The month and filters picked in the sidebar (and kept in the URL), limited to what the
    viewer may see."""
    sb = st.sidebar
    at = at or datetime.now(UTC)
    names = names or Names.of(Org(settings))
    months = _months(engine, at)
    opening, why = default_month(months, at)
    picked = _restore("f_month", lambda v: v[-1] if v[-1] in months else None)
    if st.session_state.get("f_month") not in months:
        st.session_state["f_month"] = opening
        picked = False
    period = sb.selectbox("Month", months, key="f_month")
    if not picked and period == opening and why:
        sb.caption(why)
    limit = {"department": viewer.department} if viewer.department else None
    db = str(engine.url)  # password hidden: the same ledger either way
    seen = _options(engine, db, period, limit)

    def choices(key: str, options: list[str]) -> list[str]:
        """Options with whatever is chosen already (a filter is kept, not dropped, when the
        month has no such value)."""
        _restore(key, lambda v: v)
        chosen = [x for x in st.session_state.get(key, []) if isinstance(x, str)]
        st.session_state[key] = chosen
        return [*options, *(x for x in chosen if x not in options)]

    if viewer.department is None:
        dept_options = names.sorted_departments(choices("f_department", seen["department"]))
        departments = tuple(sb.multiselect("Department", dept_options, key="f_department", format_func=names.department, placeholder="All departments"))
    else:
        departments = (viewer.department,)
        sb.caption(f"Department: **{names.department(viewer.department)}** (your view is limited to it)")
    team_options = seen["team"]
    if len(departments) == 1 and viewer.department is None:
        team_options = _options(engine, db, period, {"department": departments[0]})["team"]
    team_options = names.sorted_teams(choices("f_team", team_options))
    teams = tuple(sb.multiselect("Team", team_options, key="f_team", format_func=names.team, placeholder="All teams"))
    models = tuple(sb.multiselect("Model", choices("f_model", [m for m in seen["model"] if m]), key="f_model", placeholder="All models"))
    providers = tuple(sb.multiselect("Provider", choices("f_provider", [p for p in seen["provider"] if p]), key="f_provider", placeholder="All providers"))
    _restore("f_tags", lambda v: ", ".join(v))
    raw_tags = sb.text_input("Tags", key="f_tags", placeholder="env=prod, feature=search", help="k=v pairs a call must all carry")
    tags = tuple(t.strip() for t in raw_tags.split(",") if "=" in t)
    shown = {"f_month": period, "f_team": teams, "f_model": models, "f_provider": providers, "f_tags": raw_tags.strip()}
    if viewer.department is None:
        shown["f_department"] = departments
    _publish(shown)
    filters = Filters(departments, teams, models, providers, tags).within(viewer.department)
    return period, filters


__all__ = ["View", "config_path", "ledger", "now", "report", "sidebar_filters", "view"]
