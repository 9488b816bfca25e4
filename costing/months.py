"""Billing months (`YYYY-MM`, UTC): parsing them, their arithmetic, the month a call is billed
in, whether a month has ended, and closing one.

Closing freezes a month's chargeback: it is stored verbatim and never computed again. Events
that reach the ledger later for a closed month are billed in the next open month as
adjustments (`charge_period`). Closing holds the ledger's period lock (period_lock.py) while
it snapshots the month and marks it closed, and writers assign charge periods under the same
lock, so an event the proxy writes while a month is being closed is in the snapshot or an
adjustment.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import orjson
import sqlalchemy as sa

from .chargeback import Chargeback, compute, line_sums, snapshot
from .credit_ledger import period_credits
from .errors import InvalidMonth, PeriodClosed, PeriodNotEnded
from .period_lock import lock_periods
from .rate_cards import rated_lines
from .tables import PERIODS, PeriodSnapshot, utcnow

if TYPE_CHECKING:  # config validates its months with parse_month: a runtime import would be a cycle
    from .config import Settings

# ASCII digits, for validators that take a pattern (no look-arounds: pydantic's regex has none).
# Years 0001 to 9998: every month then has an end a datetime can hold (year 0 has no datetime,
# and the month after 9999-12 none either).
MONTH_PATTERN = r"^(000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9]|999[0-8])-(0[1-9]|1[0-2])$"
_MONTH = re.compile(MONTH_PATTERN)  # used with fullmatch: no trailing newline either


def is_month(value: object) -> bool:
    """True for a month written `YYYY-MM` (01 to 12)."""
    return isinstance(value, str) and _MONTH.fullmatch(value) is not None


def parse_month(value: str) -> str:
    """`value` if it is a month written `YYYY-MM`; raises InvalidMonth otherwise."""
    if not is_month(value):
        raise InvalidMonth(value)
    return value


def period_of(ts: datetime) -> str:
    """The month `ts` falls in (`ts` in UTC)."""
    return f"{ts.year:04d}-{ts.month:02d}"


def current_period(now: datetime | None = None) -> str:
    """The month it is `now` (default: the clock's, UTC)."""
    return period_of(now or datetime.now(UTC))


def next_period(period: str) -> str:
    y, m = int(period[:4]), int(period[5:])
    return f"{y + m // 12:04d}-{m % 12 + 1:02d}"


def previous_period(period: str) -> str:
    y, m = int(period[:4]), int(period[5:])
    return f"{y - 1:04d}-12" if m == 1 else f"{y:04d}-{m - 1:02d}"


def month_start(period: str) -> datetime:
    """The first instant of `period`, UTC."""
    return datetime(int(period[:4]), int(period[5:]), 1, tzinfo=UTC)


def month_end(period: str) -> datetime:
    """The first instant after `period`, UTC."""
    return month_start(next_period(period))


def has_ended(period: str, now: datetime | None = None) -> bool:
    """True once `now` is past the month (a month can be closed from then on)."""
    return period < current_period(now)


def ensure_ended(period: str, now: datetime | None = None) -> None:
    """Raise PeriodNotEnded unless `period` is over at `now`."""
    if not has_ended(period, now):
        raise PeriodNotEnded(period, current_period(now))


def charge_period(ts: datetime, closed: set[str]) -> tuple[str, bool]:
    """The month a call is billed in, and whether it is late: its own month, or the first
    open one after it when its own was closed."""
    period = period_of(ts)
    late = period in closed
    while period in closed:
        period = next_period(period)
    return period, late


def closed_periods(engine: sa.Engine) -> set[str]:
    """The months closed so far."""
    with engine.connect() as conn:
        return set(conn.execute(sa.select(PERIODS.c.period)).scalars())


def is_closed(engine: sa.Engine, period: str) -> bool:
    return snapshot(engine, period) is not None


def close_period(
    engine: sa.Engine, settings: Settings, period: str, *, now: datetime | None = None, force: bool = False
) -> Chargeback:
    """Freeze `period`'s chargeback as it is `now` (default: the clock's).

    Raises PeriodNotEnded for a month that is not over at `now` unless `force` (finance may
    close the current month early), and PeriodClosed if it already is closed.
    """
    if not force:
        ensure_ended(period, now)
    done = snapshot(engine, period)
    if done is not None:
        raise PeriodClosed(f"{period} is already closed (since {done.closed_at:%Y-%m-%d %H:%M} UTC); its chargeback is final")
    with engine.begin() as conn:
        if period in lock_periods(conn, exclusive=True):
            raise PeriodClosed(f"{period} was closed by someone else just now")
        cb = compute(line_sums(conn, period), settings, period, period_credits(conn, settings, period), rated_lines(conn, settings, period))
        row = PeriodSnapshot(period=period, closed_at=now or utcnow(), snapshot=orjson.dumps(cb.as_dict()).decode())
        conn.execute(sa.insert(PERIODS).values(**row.model_dump()))
    cb.closed_at = row.closed_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    return cb


__all__ = [
    "MONTH_PATTERN",
    "charge_period",
    "close_period",
    "closed_periods",
    "current_period",
    "ensure_ended",
    "has_ended",
    "is_closed",
    "is_month",
    "month_end",
    "month_start",
    "next_period",
    "parse_month",
    "period_of",
    "previous_period",
]
