"""Month over month: the previous month, the change, and a month-end forecast for the open month.

Comparisons are honest about partial months: the open month so far is compared with the same
stretch of the month before (`same_stretch`), never with the whole of it, and the dashboard's
forecast waits for `FORECAST_MIN_DAYS` of data (`forecast(..., min_days=...)`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from meterline.costing import month_end, month_start, period_of, previous_period

CENT = Decimal("0.01")
# A run rate from fewer days than a week swings with the weekday/weekend cycle: three busy
# weekdays project a month a third too high, a weekend start one far too low. From the 8th on
# the run rate covers at least one weekend, and the dashboard shows a forecast.
FORECAST_MIN_DAYS = 7
# The dashboard opens on the current month once it has a full day of data; before that (the
# 1st of a month) it opens on the month before, which is the picture people come for.
OPEN_MIN_HOURS = 24


def elapsed(period: str, now: datetime | None = None) -> timedelta | None:
    """How much of `period` has passed, when `now` is in it (None for any other month)."""
    now = now or datetime.now(UTC)
    return now - month_start(period) if period == period_of(now) else None


def same_stretch(period: str, now: datetime | None = None) -> datetime | None:
    """The end of the stretch of the month before `period` that matches `period` so far (as
    long since its start, at most all of it); None when `period` is not the open month."""
    gone = elapsed(period, now)
    if gone is None:
        return None
    prev = previous_period(period)
    return min(month_start(prev) + gone, month_start(period))


def change_percent(current: Decimal, previous: Decimal | None) -> Decimal | None:
    """Change against the previous month in percent, one decimal (None: nothing to compare)."""
    if not previous:
        return None
    return ((current - previous) * 100 / previous).quantize(Decimal("0.1"))


def forecast(so_far: Decimal, period: str, now: datetime | None = None, *, min_days: int = 0) -> Decimal | None:
    """Month-end spend at the run rate so far (linear in time elapsed), for the month `now`
    is in once `min_days` of it have passed; None for any other month or before that."""
    gone = elapsed(period, now)
    if gone is None or gone <= timedelta(0) or gone < timedelta(days=min_days):
        return None
    start, end = month_start(period), month_end(period)
    seconds = Decimal(str(gone.total_seconds()))
    return (so_far * Decimal(str((end - start).total_seconds())) / seconds).quantize(CENT)


def forecast_from(period: str, now: datetime | None = None, min_days: int = FORECAST_MIN_DAYS) -> datetime | None:
    """When the open month's forecast appears (None: not the open month)."""
    return month_start(period) + timedelta(days=min_days) if elapsed(period, now) is not None else None


def change_text(current: Decimal, previous: Decimal | None) -> str:
    pct = change_percent(current, previous)
    if pct is None:
        return "new" if current else "-"
    return f"{pct:+}%"


__all__ = [
    "FORECAST_MIN_DAYS",
    "OPEN_MIN_HOURS",
    "change_percent",
    "change_text",
    "elapsed",
    "forecast",
    "forecast_from",
    "same_stretch",
]
