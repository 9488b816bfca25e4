"""How money, counts and changes look on the dashboard (display only: no arithmetic on money).

Tables show money as currency with two decimals (`money_col`), counts with thousands
separators (`count_col`), human column labels, and "–" for a missing value; the exact amounts
are in the downloads and in the charts' tooltips. Money becomes a float only here, on its way
to a table cell or a chart mark.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal
from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

from meterline.reports.csvsafe import safe_text

MISSING = "–"
EXACT_HELP = "Rounded to the cent; the exact amount (six decimals) is in the downloads and the chart's tooltip."


def money(amount: Decimal | None, places: int = 2, currency: str = "USD") -> str:
    """ "$1,234.57": half a cent rounds away from zero, as the browser's currency format
    rounds a table cell, so a card and a cell never differ by a cent."""
    if amount is None:
        return MISSING
    q = amount.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    sign = "-" if q < 0 else ""
    symbol = "$" if currency == "USD" else f"{currency} "
    return f"{sign}{symbol}{abs(q):,.{places}f}"


def fixed(amount: Decimal, places: int = 6) -> str:
    """Fixed decimals, as the exports show money."""
    return f"{amount.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN):f}"


def change(pct: Decimal | None) -> str | None:
    """A metric's delta ("+12.5%"), or None for no delta at all."""
    return None if pct is None else f"{pct:+}%"


def count(n: int | None) -> str:
    return MISSING if n is None else f"{n:,}"


# -- tables ---------------------------------------------------------------------------------


# Column widths in px: room for "$12,345.67" and "12,345,678", and for the header above them.
MONEY_WIDTH = 105
COUNT_WIDTH = 105


def money_col(label: str, currency: str = "USD", help: str = EXACT_HELP, width: Any = MONEY_WIDTH) -> Any:
    fmt = "dollar" if currency == "USD" else "%.2f"
    return st.column_config.NumberColumn(label if currency == "USD" else f"{label} ({currency})", format=fmt, help=help, width=width)


def fine_money_col(label: str, places: int = 6, help: str | None = None, width: Any = MONEY_WIDTH) -> Any:
    """Dollars with `places` decimals, for amounts a cent would hide (one call, one agent run)."""
    return st.column_config.NumberColumn(label, format=f"$%.{places}f", help=help, width=width)


def count_col(label: str, help: str | None = None, width: Any = COUNT_WIDTH) -> Any:
    return st.column_config.NumberColumn(label, format="localized", help=help, width=width)


def percent_col(label: str, help: str | None = None) -> Any:
    return st.column_config.NumberColumn(label, format="%.1f%%", help=help, width=80)


def text_col(label: str, help: str | None = None, width: Any = "medium") -> Any:
    return st.column_config.TextColumn(label, help=help, width=width)


CENT = Decimal("0.01")


def _cell(x: Any, cents: bool) -> Any:
    if isinstance(x, str):
        # The table's own "Download as CSV" writes cells as shown, with no formula escaping:
        # names clients chose are shown as the exports write them (reports/csvsafe.py).
        return safe_text(x)
    if isinstance(x, Decimal):
        # Rounded here, exactly, before it becomes a float: $1.815 as a float is 1.81499..., which
        # the browser would show as $1.81 next to a card saying $1.82.
        return float(x.quantize(CENT, rounding=ROUND_HALF_UP) if cents else x)
    return x


def _is_money(config: Any) -> bool:
    return isinstance(config, dict) and config.get("type_config", {}).get("format") in ("dollar", "%.2f")


def table(rows: list[dict[str, Any]], columns: Mapping[str, Any], *, key: str | None = None, height: Any = "auto") -> pd.DataFrame:
    """Lay out `rows` with the columns (field -> column config) in that order, labelled and
    formatted; returns the frame shown (money as floats)."""
    money_fields = {c for c, cfg in columns.items() if _is_money(cfg)}
    frame = pd.DataFrame([{c: _cell(r.get(c), c in money_fields) for c in columns} for r in rows], columns=list(columns))
    st.dataframe(
        frame,
        column_config=dict(columns),
        hide_index=True,
        width="stretch",
        height=height,
        placeholder=MISSING,
        key=key,
    )
    return frame


# -- charts ---------------------------------------------------------------------------------


def for_chart(frame: pd.DataFrame, *columns: str) -> pd.DataFrame:
    """A copy whose money columns are floats, for charts only (tables keep the Decimals)."""
    return frame.assign(**{c: frame[c].map(float) for c in columns})


def usd_tooltip(field: str, title: str = "USD", places: int = 2) -> alt.Tooltip:
    return alt.Tooltip(f"{field}:Q", title=title, format=f"$,.{places}f")


def exact_tooltip(field: str, title: str = "Exact USD") -> alt.Tooltip:
    return alt.Tooltip(f"{field}:Q", title=title, format="$,.6f")


USD_AXIS = alt.Axis(format="$,.2f", tickCount=5, labelOverlap=True)


def usd_axis(largest: float, title_ticks: int = 5) -> alt.Axis:
    """A dollar axis with enough decimals for the amounts shown (cents hide small spend),
    a few ticks and no overlapping labels."""
    fmt = "$,.0f" if largest >= 100 else ("$,.2f" if largest >= 0.1 else "$,.4f")
    return alt.Axis(format=fmt, tickCount=title_ticks, labelOverlap=True, grid=True)


def bar_height(per_bar: int = 26) -> alt.Step:
    """Height of horizontal bars: a fixed step per bar, so one label per bar has room at 5
    bars or at 50 (the chart grows with them)."""
    return alt.Step(per_bar)


def ranked_bars(frame: pd.DataFrame, name: str, title: str, *extra: alt.Tooltip | str) -> alt.Chart:
    """Horizontal bars of `cost_usd` per `name`, largest on top, with hover values."""
    data = for_chart(frame, "cost_usd")
    return (
        alt.Chart(data)
        .mark_bar()
        .encode(
            x=alt.X("cost_usd:Q", title="Cost (USD)", axis=usd_axis(float(data["cost_usd"].max() or 0))),
            y=alt.Y(f"{name}:N", sort="-x", title=None, axis=alt.Axis(labelLimit=260, labelOverlap=False)),
            tooltip=[alt.Tooltip(f"{name}:N", title=title), alt.Tooltip("requests:Q", title="Requests", format=","), *extra,
                     exact_tooltip("cost_usd", "Cost (USD)")],
        )  # fmt: skip
        .properties(height=bar_height())
    )
