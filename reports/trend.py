"""Month over month: the previous month, the change, and a month-end forecast for the open month."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from meterline.costing import next_period, period_of

CENT = Decimal("0.01")


def previous_period(period: str) -> str:
    y, m = int(period[:4]), int(period[5:])
    return f"{y - 1:04d}-12" if m == 1 else f"{y:04d}-{m - 1:02d}"


def _start(period: str) -> datetime:
    return datetime(int(period[:4]), int(period[5:]), 1, tzinfo=UTC)


def change_percent(current: Decimal, previous: Decimal | None) -> Decimal | None:
    """Change against the previous month in percent, one decimal (None: nothing to compare)."""
    if not previous:
        return None
    return ((current - previous) * 100 / previous).quantize(Decimal("0.1"))


def forecast(so_far: Decimal, period: str, now: datetime | None = None) -> Decimal | None:
    """Month-end spend at the run rate so far (linear in time elapsed), for the month `now`
    is in; None for any other month."""
    now = now or datetime.now(UTC)
    if period != period_of(now):
        return None
    start, end = _start(period), _start(next_period(period))
    elapsed = Decimal(str((now - start).total_seconds()))
    if elapsed <= 0:
        return None
    return (so_far * Decimal(str((end - start).total_seconds())) / elapsed).quantize(CENT)


def change_text(current: Decimal, previous: Decimal | None) -> str:
    pct = change_percent(current, previous)
    if pct is None:
        return "new" if current else "-"
    return f"{pct:+}%"


__all__ = ["change_percent", "change_text", "forecast", "previous_period"]
