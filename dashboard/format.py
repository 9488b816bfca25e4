"""How money, counts and changes look on the dashboard (display only: no arithmetic on money)."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

import altair as alt
import pandas as pd


def money(amount: Decimal | None, places: int = 2, currency: str = "USD") -> str:
    if amount is None:
        return "–"
    q = amount.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)
    sign = "-" if q < 0 else ""
    symbol = "$" if currency == "USD" else f"{currency} "
    return f"{sign}{symbol}{abs(q):,.{places}f}"


def fixed(amount: Decimal, places: int = 6) -> str:
    """A table cell: fixed decimals, as the exports show money."""
    return f"{amount.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN):f}"


def change(pct: Decimal | None) -> str | None:
    return None if pct is None else f"{pct:+}%"


def for_chart(frame: pd.DataFrame, *columns: str) -> pd.DataFrame:
    """A copy whose money columns are floats, for charts only (tables keep the Decimals)."""
    return frame.assign(**{c: frame[c].map(float) for c in columns})


def usd_tooltip(field: str, title: str = "USD") -> alt.Tooltip:
    return alt.Tooltip(f"{field}:Q", title=title, format="$,.2f")


USD_AXIS = alt.Axis(format="$,.2f")


def usd_axis(largest: float) -> alt.Axis:
    """A dollar axis with enough decimals for the amounts shown (cents hide small spend)."""
    return USD_AXIS if largest >= 1 else alt.Axis(format="$,.4f")


def ranked_bars(frame: pd.DataFrame, name: str, *extra: alt.Tooltip | str) -> alt.Chart:
    """Horizontal bars of `cost_usd` per `name`, largest on top, with hover values."""
    data = for_chart(frame, "cost_usd")
    return (
        alt.Chart(data)
        .mark_bar()
        .encode(
            x=alt.X("cost_usd:Q", title="USD", axis=usd_axis(data["cost_usd"].max())),
            y=alt.Y(f"{name}:N", sort="-x", title=None, axis=alt.Axis(labelOverlap=False, labelLimit=220)),
            tooltip=[f"{name}:N", alt.Tooltip("requests:Q", format=","), *extra, usd_tooltip("cost_usd")],
        )
        .properties(height=max(120, 32 * len(frame)))
    )
